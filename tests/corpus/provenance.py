"""Image files that carry provenance evidence, built in code: nothing binary is committed.

Real samples, written the way the tools that make them write them: a C2PA manifest signed with
a certificate chain made here (a root CA and an ES256 signing certificate with the extensions
C2PA requires) and a tampered copy; XMP with an IPTC digital source type; PNG text chunks as
AUTOMATIC1111, ComfyUI and NovelAI write them; EXIF Software tags. And hostile files that try to
make the evidence readers slow or big (`hostile()`), for the tests and `bench/evidence_cost.py`.
"""

from __future__ import annotations

import datetime
import io
import json
import struct
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, PngImagePlugin

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def _noise(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def jpeg(seed: int = 0, **params: object) -> bytes:
    buffer = io.BytesIO()
    _noise(seed=seed).save(buffer, "JPEG", quality=90, **params)
    return buffer.getvalue()


def png(seed: int = 0, text: list[tuple[str, str]] | None = None, **params: object) -> bytes:
    info = PngImagePlugin.PngInfo()
    for keyword, value in text or []:
        info.add_text(keyword, value)
    buffer = io.BytesIO()
    _noise(seed=seed).save(buffer, "PNG", pnginfo=info, **params)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- C2PA
@dataclass(frozen=True)
class SigningChain:
    chain_pem: str  # the signing certificate, then the CA
    key_pem: str
    ca_pem: str  # the trust anchor


@cache
def signing_chain(name: str = "Penguin12 Test Generator") -> SigningChain:
    """A root CA and an end-entity certificate as C2PA requires: v3, ES256 (P-256),
    digitalSignature key usage, the emailProtection EKU, not self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def subject(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Penguin12 tests"),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject(f"{name} Root CA"))
        .issuer_name(subject(f"{name} Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SigningChain(pem(leaf) + pem(ca), key_pem, pem(ca))


def c2pa_signed(
    source: bytes,
    *,
    source_type: str | None = "trainedAlgorithmicMedia",
    generator: str = "Penguin12 test generator",
    mime: str = "image/jpeg",
    chain: SigningChain | None = None,
    remote_url: str | None = None,
) -> bytes:
    """``source`` with a C2PA manifest: one c2pa.created action of ``source_type``; embedded, or
    only referenced from the XMP (``remote_url``: the manifest is meant to be served there)."""
    import c2pa

    chain = chain or signing_chain()
    action: dict[str, str] = {"action": "c2pa.created"}
    if source_type:
        action["digitalSourceType"] = IPTC + source_type
    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "generated",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    info = c2pa.C2paSignerInfo(
        c2pa.C2paSigningAlg.ES256, chain.chain_pem.encode(), chain.key_pem.encode(), None
    )
    signed = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        builder.sign(signer, mime, io.BytesIO(source), signed)
    return signed.getvalue()


def tampered_signature(signed: bytes) -> bytes:
    """The same file with one byte of the claim signature flipped: it no longer verifies.

    The signature is the last field of the COSE_Sign1 structure, which ends the c2pa.signature
    JUMBF superbox: superbox header (8 bytes), then its jumd box (8 + 16-byte type + toggles),
    whose label we find."""
    label = signed.index(b"c2pa.signature\x00")
    superbox = label - 25 - 8
    (length,) = struct.unpack_from(">I", signed, superbox)
    assert signed[superbox + 4 : superbox + 8] == b"jumb", "unexpected JUMBF layout"
    at = superbox + length - 10  # inside the 64-byte ES256 signature
    return signed[:at] + bytes([signed[at] ^ 0x55]) + signed[at + 1 :]


def strip_app11(data: bytes) -> bytes:
    """A JPEG without its APP11 segments: a C2PA manifest removed, as many tools do on save."""
    out, pos = bytearray(data[:2]), 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] not in (0xDA, 0xD9):
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if data[pos + 1] != 0xEB:
            out += data[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])


# ---------------------------------------------------------------------------------------- XMP
def xmp_packet(
    source_type: str | None = None, provenance: str | None = None, *, element: bool = False
) -> bytes:
    """An XMP packet as Adobe tools write it, with the IPTC DigitalSourceType as an attribute
    (``element=False``) or as an element with rdf:resource (both forms occur in the wild)."""
    attrs, body = [], []
    if source_type and element:
        body.append(f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{IPTC}{source_type}"/>')
    elif source_type:
        attrs.append(f'Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"')
    if provenance:
        attrs.append(f'dcterms:provenance="{provenance}"')
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:dcterms="http://purl.org/dc/terms/" '
        f"{' '.join(attrs)}>{''.join(body)}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def with_app_segment(jpeg_bytes: bytes, marker: int, body: bytes) -> bytes:
    """Insert one APPn segment right after SOI."""
    return jpeg_bytes[:2] + struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body + jpeg_bytes[2:]


def xmp_jpeg(packet: bytes, seed: int = 0) -> bytes:
    return with_app_segment(jpeg(seed), 0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet)


# ------------------------------------------------------------------------- generator metadata
A1111_PARAMETERS = (
    "a penguin on an iceberg, photorealistic, 8k\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567890, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.7.0"
)
COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": 42, "steps": 20, "cfg": 8, "sampler_name": "euler", "model": ["4", 0]},
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    },
}
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "version": 0.4}
NOVELAI_COMMENT = {"prompt": "a penguin", "steps": 28, "sampler": "k_euler_ancestral"}


def a1111_png(seed: int = 0) -> bytes:
    return png(seed, [("parameters", A1111_PARAMETERS)])


def comfyui_png(seed: int = 0) -> bytes:
    return png(
        seed,
        [("prompt", json.dumps(COMFY_PROMPT)), ("workflow", json.dumps(COMFY_WORKFLOW))],
    )


def novelai_png(seed: int = 0) -> bytes:
    return png(
        seed,
        [
            ("Title", "AI generated image"),
            ("Description", "a penguin"),
            ("Software", "NovelAI"),
            ("Source", "Stable Diffusion XL C1E1DE52"),
            ("Comment", json.dumps(NOVELAI_COMMENT)),
        ],
    )


def exif_jpeg(seed: int = 0, **tags: str) -> bytes:
    """A JPEG whose EXIF holds the given IFD0 tags (Software, Artist, ImageDescription)."""
    exif = Image.Exif()
    codes = {"Software": 0x0131, "Artist": 0x013B, "ImageDescription": 0x010E}
    for name, value in tags.items():
        exif[codes[name]] = value
    return jpeg(seed, exif=exif.tobytes())


# ------------------------------------------------------------------------------------ hostile
def _jumbf_app11(box: bytes, sequence: int = 1) -> bytes:
    """One APP11 segment of JPEG-XT carrying (part of) a JUMBF box."""
    return b"JP" + struct.pack(">HI", 1, sequence) + box


def _jumd(label: str) -> bytes:
    c2pa_uuid = bytes.fromhex("6332706100110010800000aa00389b71")  # "c2pa" manifest store
    body = c2pa_uuid + b"\x03" + label.encode() + b"\x00"
    return struct.pack(">I", 8 + len(body)) + b"jumd" + body


def nested_jumbf(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        content = _jumd("c2pa") + inner
        inner = struct.pack(">I", 8 + len(content)) + b"jumb" + content
    return inner


def hostile() -> dict[str, bytes]:
    """Files built to make the evidence readers slow or big; each must cost little and raise
    nothing. Each is a decodable image, so the pipeline would process it."""
    base = jpeg()
    rng = np.random.default_rng(1)
    files: dict[str, bytes] = {}
    # ~9.6 MB of XMP in 150 APP1 segments that all mention DigitalSourceType.
    filler = b"<rdf:li>DigitalSourceType</rdf:li>" * 1800
    packet = xmp_packet("trainedAlgorithmicMedia")[:-40] + filler[:60_000]
    huge = base
    for _ in range(150):
        huge = with_app_segment(huge, 0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet)
    files["huge_xmp_jpeg"] = huge
    # One 8 MB XMP packet in a PNG iTXt chunk.
    big_packet = xmp_packet("trainedAlgorithmicMedia") + b" " * (8 << 20)
    files["huge_xmp_png"] = _png_with_chunks([_itxt("XML:com.adobe.xmp", big_packet)])
    # 5 000 compressed XMP chunks, each inflating to 1 MB of padding.
    padded = zlib.compress(xmp_packet("trainedAlgorithmicMedia") + b" " * (1 << 20), 9)
    files["png_xmp_flood"] = _png_with_chunks(
        [_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + padded)] * 5000
    )
    # Entity expansion (billion laughs) and deep element nesting in XMP.
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "DigitalSourceType">'
        + b"".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9)
        )
        + b"]><x>&j;</x>"
    )
    files["xmp_entity_bomb"] = xmp_jpeg(laughs)
    deep = b"<a>" * 20_000 + b"DigitalSourceType" + b"</a>" * 20_000
    files["xmp_deep_nesting"] = xmp_jpeg(deep[:65_000])
    # C2PA: random bytes where the manifest store should be; a JUMBF box nested 2 000 deep;
    # a signed manifest with 4 KB zeroed; 5 MB of APP11 segments.
    files["manifest_garbage"] = with_app_segment(
        base, 0xEB, _jumbf_app11(b"\x00\x00\x40\x00jumb" + rng.bytes(16_000))
    )
    files["jumbf_deep_nesting"] = with_app_segment(
        base, 0xEB, _jumbf_app11(nested_jumbf(2_000)[:65_000])
    )
    signed = c2pa_signed(base)
    app11 = signed.index(b"\xff\xeb")  # zero 4 KB inside the manifest's first segment
    files["manifest_corrupt"] = signed[: app11 + 300] + bytes(4096) + signed[app11 + 4396 :]
    many = base
    for i in range(80):
        many = with_app_segment(many, 0xEB, _jumbf_app11(rng.bytes(64_000), i + 1))
    files["manifest_oversized"] = many
    # PNG: 100 000 text chunks; a zTXt that inflates to 64 MB; a 2 MB parameters chunk.
    files["png_text_flood"] = _png_with_chunks(
        [_chunk(b"tEXt", b"parameters\x00Steps: 1, Sampler: x") for _ in range(100_000)]
    )
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)
    files["png_ztxt_bomb"] = _png_with_chunks([_chunk(b"zTXt", b"prompt\x00\x00" + bomb)])
    files["png_text_huge"] = _png_with_chunks(
        [_chunk(b"tEXt", b"parameters\x00" + b"x" * (2 << 20) + b"\nSteps: 1, Sampler: y")]
    )
    # EXIF: a 64 KB APP1 of IFD entries pointing everywhere.
    ifd = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 5000)
    ifd += b"".join(struct.pack("<HHII", 0x0131, 2, 60_000, 8) for _ in range(5000))
    files["exif_hostile"] = with_app_segment(base, 0xE1, b"Exif\x00\x00" + ifd[:65_000])
    return files


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _itxt(keyword: str, text: bytes) -> bytes:
    return _chunk(b"iTXt", keyword.encode() + b"\x00\x00\x00\x00\x00" + text)


def _png_with_chunks(extra: list[bytes]) -> bytes:
    """A small valid PNG with ``extra`` chunks before its image data."""
    plain = png()
    idat = plain.index(b"IDAT") - 4
    return plain[:idat] + b"".join(extra) + plain[idat:]
