"""Evidence readers on real samples built here (see corpus/provenance.py), the verdict rule, and
hostile metadata held to its bounds. Fast: no Kafka; the pipeline is test_evidence_pipeline.py."""

from __future__ import annotations

import http.server
import io
import json
import threading
import tracemalloc

import pytest
from corpus import provenance as samples
from PIL import Image, PngImagePlugin

from penguin12 import evidence
from penguin12.evidence import Limits, TrustAnchors, apply_declarations, read_evidence
from penguin12.evidence.containers import find_blocks
from penguin12.schemas import Finding, ModelInfo, Result


def codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.source, f.finding) for f in findings]


@pytest.fixture(scope="module")
def chain() -> samples.SigningChain:
    return samples.signing_chain()


@pytest.fixture(scope="module")
def signed(chain: samples.SigningChain) -> bytes:
    return samples.c2pa_signed(samples.jpeg(), chain=chain)


@pytest.fixture(scope="module")
def hostile() -> dict[str, bytes]:
    return samples.hostile()


# ------------------------------------------------------------------------------------- C2PA
def test_a_valid_c2pa_ai_declaration_names_generator_signer_and_trust(
    signed: bytes, chain: samples.SigningChain
) -> None:
    trusted = read_evidence(signed, trust=TrustAnchors(chain.ca_pem))
    assert codes(trusted) == [("c2pa", "ai_declared")]
    detail = trusted[0].detail
    assert "trainedAlgorithmicMedia" in detail
    assert "Penguin12 test generator 1.0" in detail
    assert "Penguin12 Test Generator" in detail  # the signing certificate's name
    assert "on the configured trust list" in detail

    unlisted = read_evidence(signed)
    assert codes(unlisted) == [("c2pa", "ai_declared")]
    assert "No trust list is configured" in unlisted[0].detail


def test_a_signer_outside_the_trust_list_is_reported_but_the_declaration_stands(
    signed: bytes,
) -> None:
    other = samples.signing_chain("Someone Else")
    found = read_evidence(signed, trust=TrustAnchors(other.ca_pem))
    assert codes(found) == [("c2pa", "ai_declared"), ("c2pa", "untrusted_signer")]
    assert "not on the configured trust list" in found[0].detail


def test_a_tampered_signature_is_invalid_and_its_claim_does_not_count(
    signed: bytes, chain: samples.SigningChain
) -> None:
    found = read_evidence(samples.tampered_signature(signed), trust=TrustAnchors(chain.ca_pem))
    assert codes(found) == [("c2pa", "manifest_invalid")]
    assert "claimSignature.mismatch" in found[0].detail
    assert "does not count" in found[0].detail


def test_changed_pixels_break_the_manifest(signed: bytes) -> None:
    at = len(signed) - 100  # inside the entropy-coded image data
    changed = signed[:at] + bytes([signed[at] ^ 0xFF]) + signed[at + 1 :]
    found = read_evidence(changed)
    assert codes(found) == [("c2pa", "manifest_invalid")]
    assert "image bytes changed after signing" in found[0].detail


def test_composite_and_capture_source_types_and_png_manifests(
    chain: samples.SigningChain,
) -> None:
    composite = samples.c2pa_signed(
        samples.jpeg(1), source_type="compositeWithTrainedAlgorithmicMedia", chain=chain
    )
    assert codes(read_evidence(composite)) == [("c2pa", "ai_declared")]
    capture = samples.c2pa_signed(samples.jpeg(2), source_type="digitalCapture", chain=chain)
    found = read_evidence(capture)
    assert codes(found) == [("c2pa", "signed_manifest")]
    assert "does not prove the image is real" in found[0].detail
    in_png = samples.c2pa_signed(samples.png(3), mime="image/png", chain=chain)
    assert codes(read_evidence(in_png)) == [("c2pa", "ai_declared")]


def test_a_stripped_manifest_is_invisible_unless_xmp_remembers_it(signed: bytes) -> None:
    assert read_evidence(samples.strip_app11(signed)) == []
    remembered = samples.xmp_jpeg(samples.xmp_packet(provenance="https://example.com/m.c2pa"))
    found = read_evidence(remembered)
    assert codes(found) == [("c2pa", "manifest_missing")]
    assert "stripped" in found[0].detail


def test_a_remote_manifest_is_named_and_never_fetched(chain: samples.SigningChain) -> None:
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_error(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/manifest.c2pa"
        data = samples.c2pa_signed(samples.jpeg(4), chain=chain, remote_url=url)
        found = read_evidence(data)
    finally:
        server.shutdown()
        server.server_close()
    assert codes(found) == [("c2pa", "manifest_missing")]
    assert url in found[0].detail and "fetches nothing" in found[0].detail
    assert asked == []


# -------------------------------------------------------------------------------------- XMP
@pytest.mark.parametrize("element", [False, True], ids=["attribute", "element"])
@pytest.mark.parametrize(
    "source_type", ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"]
)
def test_iptc_ai_source_types_in_xmp_are_declarations(source_type: str, element: bool) -> None:
    data = samples.xmp_jpeg(samples.xmp_packet(source_type, element=element))
    found = read_evidence(data)
    assert codes(found) == [("xmp", "ai_declared")]
    assert source_type in found[0].detail


def test_other_source_types_are_reported_and_never_clear() -> None:
    found = read_evidence(samples.xmp_jpeg(samples.xmp_packet("digitalCapture")))
    assert codes(found) == [("xmp", "source_type")]
    assert "does not prove the image is real" in found[0].detail


def test_xmp_in_png_itxt_and_webp() -> None:
    packet = samples.xmp_packet("trainedAlgorithmicMedia")
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode(), zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    assert codes(read_evidence(buffer.getvalue())) == [("xmp", "ai_declared")]
    webp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(webp, "WEBP", xmp=packet)
    assert codes(read_evidence(webp.getvalue())) == [("xmp", "ai_declared")]


def test_xmp_with_a_dtd_is_refused_before_any_entity_expands(hostile: dict[str, bytes]) -> None:
    found = read_evidence(hostile["xmp_entity_bomb"])
    assert codes(found) == [("xmp", "unreadable")]
    assert "DTD" in found[0].detail


# -------------------------------------------------------------------- generator metadata
def test_png_text_chunks_of_sd_front_ends() -> None:
    a1111 = read_evidence(samples.a1111_png())
    assert codes(a1111) == [("png", "generator_parameters")]
    assert "AUTOMATIC1111" in a1111[0].detail and "v1-5-pruned-emaonly" in a1111[0].detail

    comfy = read_evidence(samples.comfyui_png())
    assert codes(comfy) == [("png", "generator_workflow")]
    assert "sd_xl_base_1.0.safetensors" in comfy[0].detail

    novelai = read_evidence(samples.novelai_png())
    assert codes(novelai) == [("png", "generator_software")]
    assert "NovelAI" in novelai[0].detail


def test_compressed_text_chunks_are_read_too() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", samples.A1111_PARAMETERS, zip=True)  # zTXt
    info.add_itxt("workflow", json.dumps(samples.COMFY_WORKFLOW), zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    assert codes(read_evidence(buffer.getvalue())) == [
        ("png", "generator_parameters"),
        ("png", "generator_workflow"),
    ]


def test_exif_software_and_parameters_name_the_generator() -> None:
    firefly = read_evidence(samples.exif_jpeg(Software="Adobe Firefly"))
    assert codes(firefly) == [("exif", "generator_software")]
    assert "Adobe Firefly" in firefly[0].detail
    assert read_evidence(samples.exif_jpeg(Software="Adobe Photoshop 25.0 (Windows)")) == []
    assert codes(read_evidence(samples.exif_jpeg(Artist="Midjourney"))) == [
        ("exif", "generator_software")
    ]
    # AUTOMATIC1111 saves JPEGs with the parameters in the Exif UserComment (UTF-16).
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + samples.A1111_PARAMETERS.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif.tobytes())
    assert codes(read_evidence(buffer.getvalue())) == [("exif", "generator_parameters")]


def test_plain_photos_and_other_formats_carry_no_evidence(photos: dict[str, bytes]) -> None:
    for name, data in photos.items():
        assert read_evidence(data) == [], name
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    assert read_evidence(bmp.getvalue()) == []


# -------------------------------------------------------------------------------- the rule
def _model_verdict(prediction: str, fake_probability: float) -> Result:
    info = ModelInfo(name="m", version="v", architecture="tiny", demo=True)
    confidence = fake_probability if prediction == "FAKE" else 1 - fake_probability
    return Result(
        prediction=prediction,
        confidence=confidence,
        fake_probability=fake_probability,
        model=info,
        demo=True,
        assessment="likely_real" if prediction == "REAL" else "likely_fake",
    )


def test_a_declaration_makes_the_verdict_fake_and_keeps_the_pixel_probability() -> None:
    for source in ("c2pa", "xmp"):
        declared = Finding(source=source, finding="ai_declared", detail="d")
        final = apply_declarations(_model_verdict("REAL", 0.12), [declared])
        assert (final.prediction, final.assessment) == ("FAKE", evidence.DECLARED_AI)
        assert final.fake_probability == 0.12  # the pixel model's own estimate, still reported
        assert final.evidence == [declared]


def test_nothing_else_changes_the_verdict_and_nothing_clears_an_image() -> None:
    not_declarations = [
        Finding(source="c2pa", finding="manifest_invalid", detail="d"),
        Finding(source="c2pa", finding="signed_manifest", detail="digitalCapture"),
        Finding(source="xmp", finding="source_type", detail="digitalCapture"),
        Finding(source="png", finding="generator_parameters", detail="d"),
        Finding(source="exif", finding="generator_software", detail="d"),
    ]
    for model in (_model_verdict("FAKE", 0.93), _model_verdict("REAL", 0.2)):
        final = apply_declarations(model, not_declarations)
        assert final.model_dump(exclude={"evidence"}) == model.model_dump(exclude={"evidence"})
        assert final.evidence == not_declarations
    assert apply_declarations(_model_verdict("REAL", 0.2), []).evidence == []


# ------------------------------------------------------------------------ hostile metadata
def test_hostile_metadata_never_raises_and_stays_within_its_bounds(
    hostile: dict[str, bytes],
) -> None:
    """Bounds asserted structurally (what is kept, how much Python memory), not by timing:
    `make bench` measures the time (bench/evidence_cost.py)."""
    limits = Limits()
    for name, data in hostile.items():
        blocks = find_blocks(data, limits)
        assert sum(map(len, blocks.xmp)) <= limits.max_xmp_bytes, name
        assert len(blocks.text) <= limits.max_text_chunks, name
        assert sum(len(t) for _, t in blocks.text) <= limits.max_total_text_bytes, name
        tracemalloc.start()
        try:
            found = read_evidence(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 20 * 2**20, f"{name}: {peak:,} bytes"
        assert len(found) <= evidence.MAX_FINDINGS, name
        assert all(f.finding != "ai_declared" for f in found), (name, found)


def test_each_kind_of_hostile_file_is_named_in_a_finding(hostile: dict[str, bytes]) -> None:
    expected = {
        "huge_xmp_jpeg": ("evidence", "truncated"),
        "huge_xmp_png": ("evidence", "truncated"),
        "xmp_entity_bomb": ("xmp", "unreadable"),
        "xmp_deep_nesting": ("xmp", "unreadable"),
        "jumbf_deep_nesting": ("c2pa", "manifest_unreadable"),
        "manifest_corrupt": ("c2pa", "manifest_invalid"),
        "manifest_oversized": ("c2pa", "manifest_unreadable"),
        "png_text_flood": ("evidence", "truncated"),
        "png_xmp_flood": ("evidence", "truncated"),
        "exif_hostile": ("exif", "unreadable"),
    }
    for name, code in expected.items():
        assert code in codes(read_evidence(hostile[name])), name


def test_a_reader_that_breaks_becomes_a_finding_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(data: bytes, limits: Limits) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(evidence, "find_blocks", broken)
    assert codes(read_evidence(samples.jpeg())) == [("evidence", "unreadable")]


def test_a_manifest_in_a_file_over_the_size_limit_is_not_checked(signed: bytes) -> None:
    found = read_evidence(signed, limits=Limits(max_c2pa_file_bytes=len(signed) - 1))
    assert codes(found) == [("c2pa", "manifest_unreadable")]
    assert "not checked" in found[0].detail
