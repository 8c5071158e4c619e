"""Finding the metadata blocks in a JPEG, PNG or WebP file, at a cost bounded by the limits.

One pass over the container's segments or chunks, reading only their headers and the few blocks
that can carry evidence (EXIF, XMP, PNG text, C2PA). Nothing here decodes pixels or trusts a
length field: every read is clipped to the file, every count and size is capped, and hitting a
cap is recorded (``truncated``) instead of raised.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
EXIF_JPEG_HEADER = b"Exif\x00\x00"
XMP_PNG_KEYWORD = "XML:com.adobe.xmp"


@dataclass(frozen=True)
class Limits:
    """Caps on what one upload may make the evidence readers do."""

    # Segments or chunks walked: a 10 MB PNG written in 8 KB IDAT chunks has about 1 300.
    max_blocks: int = 4096
    max_text_chunks: int = 64  # PNG tEXt/iTXt/zTXt chunks read
    max_text_bytes: int = 256 * 1024  # one text chunk, after decompression
    max_total_text_bytes: int = 1024 * 1024  # all text chunks together, after decompression
    max_xmp_bytes: int = 1024 * 1024
    max_exif_bytes: int = 256 * 1024
    max_manifest_bytes: int = 4 * 1024 * 1024  # C2PA JUMBF, all parts together
    # Validating a manifest hashes the whole file, and the C2PA library holds about 1.8 times the
    # file in memory while it does: 10 MiB (the default upload limit) peaks near 17 MB.
    max_c2pa_file_bytes: int = 10 * 1024 * 1024


@dataclass
class Blocks:
    """The metadata blocks found in one file."""

    container: str = "unknown"
    xmp: list[bytes] = field(default_factory=list)
    exif: bytes | None = None
    text: list[tuple[str, str]] = field(default_factory=list)  # PNG keyword -> text
    manifest_bytes: int = 0  # C2PA JUMBF bytes embedded
    truncated: list[str] = field(default_factory=list)  # why reading stopped early, if it did


def find_blocks(data: bytes, limits: Limits) -> Blocks:
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data, limits)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data, limits)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data, limits)
    return Blocks()


def _jpeg(data: bytes, limits: Limits) -> Blocks:
    blocks = Blocks("JPEG")
    view = memoryview(data)
    pos, end, walked = 2, len(data), 0
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break  # not a marker: the header is damaged; keep what was found
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            walked += 1
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: metadata is all before
            break
        walked += 1
        if walked > limits.max_blocks:
            blocks.truncated.append(f"more than {limits.max_blocks:,} JPEG segments")
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = view[pos + 4 : pos + 2 + length]  # at most 64 KB
        if marker == 0xE1:
            head = bytes(body[: len(XMP_JPEG_HEADER)])
            if head.startswith(EXIF_JPEG_HEADER) and blocks.exif is None:
                blocks.exif = bytes(body[len(EXIF_JPEG_HEADER) :])
            elif head == XMP_JPEG_HEADER:
                _add_xmp(blocks, body[len(XMP_JPEG_HEADER) :], limits)
        elif marker == 0xEB and bytes(body[:2]) == b"JP":  # APP11: JPEG-XT, where C2PA lives
            blocks.manifest_bytes += len(body)
        pos += 2 + length
    return blocks


def _png(data: bytes, limits: Limits) -> Blocks:
    blocks = Blocks("PNG")
    view = memoryview(data)  # slices below copy nothing until a block is kept
    pos, end, walked, text_chunks, text_total = 8, len(data), 0, 0, 0
    while pos + 8 <= end:
        walked += 1
        if walked > limits.max_blocks:
            blocks.truncated.append(f"more than {limits.max_blocks:,} PNG chunks")
            break
        length, kind = struct.unpack_from(">I4s", data, pos)
        start, pos = pos + 8, pos + 12 + length
        if kind == b"IDAT":
            continue
        if kind == b"IEND":
            break
        if kind == b"caBX":  # C2PA's PNG chunk
            blocks.manifest_bytes += min(length, end - start)
        elif kind == b"eXIf" and blocks.exif is None:
            blocks.exif = bytes(view[start : start + min(length, limits.max_exif_bytes)])
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            text_chunks += 1  # XMP packets (iTXt) included: each may have to be inflated
            if text_chunks > limits.max_text_chunks:
                _note(blocks, f"more than {limits.max_text_chunks} text chunks")
                continue
            budget = min(limits.max_text_bytes, limits.max_total_text_bytes - text_total)
            if budget <= 0:
                _note(blocks, f"more than {limits.max_total_text_bytes:,} text bytes in all")
                continue
            body = view[start : start + length]
            if kind == b"iTXt" and bytes(body[:18]) == XMP_PNG_KEYWORD.encode() + b"\x00":
                # compression flag, method, language tag \0, translated keyword \0, packet
                packet = _after_nulls(body[20:], 2)
                if packet is not None and body[18] == 1:  # inflate no more than the budget + 1
                    room = min(budget, limits.max_xmp_bytes - sum(map(len, blocks.xmp)))
                    packet = memoryview(_inflate(packet, max(room, 0) + 1))
                    text_total += len(packet)
                    if len(packet) > room:
                        _note(blocks, f"XMP over the {limits.max_xmp_bytes:,}-byte limit")
                        continue
                if packet is not None:
                    _add_xmp(blocks, packet, limits)
                continue
            parsed = _png_text(kind, body, budget)
            if parsed is not None:
                blocks.text.append(parsed)
                text_total += len(parsed[1])
    return blocks


def _note(blocks: Blocks, why: str) -> None:
    if why not in blocks.truncated:
        blocks.truncated.append(why)


def _png_text(kind: bytes, body: memoryview, budget: int) -> tuple[str, str] | None:
    """(keyword, text) of one text chunk, the text cut at ``budget`` bytes; None if malformed."""
    head = bytes(body[:80])
    keyword_end = head.find(b"\x00")
    if keyword_end <= 0:
        return None
    keyword = head[:keyword_end].decode("latin-1")
    rest = body[keyword_end + 1 :]
    if kind == b"tEXt":
        return keyword, bytes(rest[:budget]).decode("latin-1")
    if kind == b"zTXt":
        return keyword, _inflate(rest[1:], budget).decode("latin-1")
    # iTXt: compression flag, method, language tag \0, translated keyword \0, text (UTF-8)
    if len(rest) < 2:
        return None
    compressed = rest[0] == 1
    text = _after_nulls(rest[2:], 2)
    if text is None:
        return None
    raw = _inflate(text, budget) if compressed else bytes(text[:budget])
    return keyword, raw.decode("utf-8", "replace")


def _after_nulls(view: memoryview, count: int) -> memoryview | None:
    """What follows the ``count``-th null byte within the first 1 KB (iTXt's two tags)."""
    head = bytes(view[:1024])
    at = -1
    for _ in range(count):
        at = head.find(b"\x00", at + 1)
        if at < 0:
            return None
    return view[at + 1 :]


def _inflate(data: bytes | memoryview, budget: int) -> bytes:
    """At most ``budget`` bytes of a zlib stream: a zip bomb costs no more than its budget."""
    try:
        return zlib.decompressobj().decompress(data, budget)
    except zlib.error:
        return b""


def _webp(data: bytes, limits: Limits) -> Blocks:
    blocks = Blocks("WEBP")
    view = memoryview(data)
    pos, end, walked = 12, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0]), 0
    while pos + 8 <= end:
        walked += 1
        if walked > limits.max_blocks:
            blocks.truncated.append(f"more than {limits.max_blocks:,} WebP chunks")
            break
        kind, length = struct.unpack_from("<4sI", data, pos)
        body = view[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)
        if kind == b"C2PA":
            blocks.manifest_bytes += len(body)
        elif kind == b"EXIF" and blocks.exif is None:
            skip = len(EXIF_JPEG_HEADER) if bytes(body[:6]) == EXIF_JPEG_HEADER else 0
            blocks.exif = bytes(body[skip : skip + limits.max_exif_bytes])
        elif kind == b"XMP ":
            _add_xmp(blocks, body, limits)
    return blocks


def _add_xmp(blocks: Blocks, packet: bytes | memoryview, limits: Limits) -> None:
    """Keep an XMP packet if it fits in what is left of the XMP budget; else note why not."""
    if len(packet) > limits.max_xmp_bytes - sum(len(x) for x in blocks.xmp):
        _note(blocks, f"XMP over the {limits.max_xmp_bytes:,}-byte limit")
        return
    blocks.xmp.append(bytes(packet))
