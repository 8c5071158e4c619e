"""What image generators and their front ends write into PNG text chunks and EXIF tags.

None of this is signed: anyone can write it and any re-save drops it. It is reported as
evidence, and never decides the verdict on its own.
"""

from __future__ import annotations

import contextlib
import re
import struct
import warnings

from PIL import Image

from penguin12.evidence.vocabulary import (
    A1111_PARAMETERS_RE,
    a1111_summary,
    generator_named_in,
)
from penguin12.schemas import Finding

_CKPT_RE = re.compile(r'"ckpt_name"\s*:\s*"([^"\\]{1,120})"')
_UNSIGNED = "Anyone can write this, and saving the image again usually drops it."

_EXIF_SOFTWARE, _EXIF_ARTIST, _EXIF_DESCRIPTION = 0x0131, 0x013B, 0x010E
_EXIF_IFD, _EXIF_USER_COMMENT = 0x8769, 0x9286
# Real IFD0 and Exif directories hold a few dozen entries; Pillow parses every one.
_MAX_IFD_ENTRIES = 256


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def png_text_findings(chunks: list[tuple[str, str]]) -> list[Finding]:
    """One finding per generator recognised among the PNG text chunks."""
    text: dict[str, str] = {}
    for keyword, value in chunks:  # the first of a repeated keyword counts
        text.setdefault(keyword, value)
    findings: list[Finding] = []
    parameters = text.get("parameters", "")
    if A1111_PARAMETERS_RE.search(parameters):
        summary = a1111_summary(parameters)
        findings.append(
            Finding(
                source="png",
                finding="generator_parameters",
                detail="A 'parameters' text chunk as the Stable Diffusion web UIs AUTOMATIC1111 "
                f"and Forge write it{f' ({summary})' if summary else ''}. {_UNSIGNED}",
            )
        )
    comfy = [k for k in ("prompt", "workflow") if text.get(k, "").lstrip().startswith("{")]
    if comfy and any(
        marker in text.get(k, "") for k in comfy for marker in ('"class_type"', '"nodes"')
    ):
        ckpt = _CKPT_RE.search(text.get("prompt", "") or text.get("workflow", ""))
        findings.append(
            Finding(
                source="png",
                finding="generator_workflow",
                detail=f"ComfyUI {' and '.join(repr(k) for k in comfy)} text chunks: the node "
                "graph that generated the image"
                f"{f' (checkpoint {_quote(ckpt.group(1))})' if ckpt else ''}. {_UNSIGNED}",
            )
        )
    if any(k in text for k in ("invokeai_metadata", "sd-metadata", "Dream")):
        findings.append(
            Finding(
                source="png",
                finding="generator_parameters",
                detail=f"InvokeAI generation metadata in a PNG text chunk. {_UNSIGNED}",
            )
        )
    for keyword in ("Software", "Source", "Author", "Title", "Description", "Comment"):
        value = text.get(keyword, "")
        if name := generator_named_in(value):
            findings.append(_generator_software("png", f"PNG {keyword!r} text chunk", name, value))
            break  # NovelAI writes Software, Source and Comment: one finding says it
    return findings


def _generator_software(source: str, where: str, name: str, value: str) -> Finding:
    """A metadata field that names a generator (``where``: "PNG 'Software' text chunk" ...)."""
    return Finding(
        source=source,
        finding="generator_software",
        detail=f"The {where} names the generator {name!r} ({_quote(value)!r}). {_UNSIGNED}",
    )


def exif_findings(exif_bytes: bytes) -> list[Finding]:
    """Generator names in EXIF Software/Artist/ImageDescription, SD parameters in UserComment."""
    entries = _ifd0_entries(exif_bytes)
    if entries > _MAX_IFD_ENTRIES:
        return [
            Finding(
                source="exif",
                finding="unreadable",
                detail=f"The EXIF block lists {entries:,} tags where real files have a few "
                "dozen; it was not read.",
            )
        ]
    exif = Image.Exif()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns once per damaged tag
        exif.load(exif_bytes)
        user_comment = b""
        with contextlib.suppress(KeyError, ValueError, TypeError, OSError, SyntaxError):
            raw = exif.get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT, b"")
            user_comment = raw if isinstance(raw, bytes) else str(raw).encode()
    findings: list[Finding] = []
    for tag, label in (
        (_EXIF_SOFTWARE, "Software"),
        (_EXIF_ARTIST, "Artist"),
        (_EXIF_DESCRIPTION, "ImageDescription"),
    ):
        value = exif.get(tag)
        if not isinstance(value, str):
            continue
        if A1111_PARAMETERS_RE.search(value):
            findings.append(_exif_parameters(label, value))
        elif name := generator_named_in(value):
            findings.append(_generator_software("exif", f"EXIF {label} tag", name, value))
    comment = _decode_user_comment(user_comment)
    if A1111_PARAMETERS_RE.search(comment):
        findings.append(_exif_parameters("UserComment", comment))
    return findings


def _ifd0_entries(tiff: bytes) -> int:
    """How many entries the first directory of a TIFF-structured EXIF block claims (0: none)."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 0
    (offset,) = struct.unpack_from(f"{order}I", tiff, 4)
    if offset + 2 > len(tiff):
        return 0
    (count,) = struct.unpack_from(f"{order}H", tiff, offset)
    return int(count)


def _exif_parameters(label: str, value: str) -> Finding:
    summary = a1111_summary(value)
    return Finding(
        source="exif",
        finding="generator_parameters",
        detail=f"The EXIF {label} tag holds Stable Diffusion generation parameters, as "
        f"AUTOMATIC1111 and Forge write them{f' ({summary})' if summary else ''}. {_UNSIGNED}",
    )


def _decode_user_comment(raw: bytes) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    prefix, body = raw[:8], raw[8:16384]
    if prefix == b"UNICODE\x00":
        for codec in ("utf-16-be", "utf-16-le"):
            text = body.decode(codec, "replace")
            if "Steps" in text:
                return text
        return ""
    return body.decode("utf-8", "replace")
