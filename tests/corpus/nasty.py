"""A corpus of hostile uploads, generated in code (small, deterministic, nothing binary committed).

Each entry says which answers are acceptable: 202 (a real image, processed), 413 (too many pixels
or bytes), 415 (not a supported image by content) or 422 (empty, truncated, corrupt). A 5xx is
never acceptable. `max_pixels` is the limit the service under test runs with; bombs declare far
more, "just under" files stay under it.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from corpus.builders import (
    apng,
    apng_lying_frame_count,
    bmp_header,
    bmp_rle8_bomb,
    exif_many_entries,
    exif_orientation,
    exif_with_loop,
    jpeg_many_markers,
    jpeg_with_app1,
    jpeg_with_dimensions,
    noise_image,
    png_chunk,
    png_flat_bomb,
    png_huge_itxt,
    png_many_chunks,
    png_raw,
    png_text_bomb,
    png_zero_pixels,
    save_image,
    webp_animated,
    webp_lossless_bomb,
    webp_vp8_dimensions,
    webp_vp8x_canvas,
)

OK, TOO_LARGE, UNSUPPORTED, CORRUPT = 202, 413, 415, 422
# Starlette refuses a multipart part whose headers are over its limit (an 8 KB filename).
BAD_MULTIPART = 400


@dataclass(frozen=True)
class NastyFile:
    name: str
    data: bytes
    expect: frozenset[int]
    filename: str = "upload.jpg"
    content_type: str = "image/jpeg"


# ------------------------------------------------------------------------------------ corpus


def build(max_pixels: int, max_upload_bytes: int) -> list[NastyFile]:
    """The whole corpus for a service running with these limits."""
    jpeg = save_image(noise_image(64, 48), "JPEG", quality=85)
    png = save_image(noise_image(64, 48), "PNG")
    webp = save_image(noise_image(64, 48), "WEBP", quality=80)
    bmp = save_image(noise_image(64, 48), "BMP")
    side = int(max_pixels**0.5) - 1  # a square just under the pixel limit
    zip_buffer = io.BytesIO()
    with zipfile.ZipFile(zip_buffer, "w") as archive:
        archive.writestr("payload.js", "alert(document.domain)")
    zip_bytes = zip_buffer.getvalue()
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"

    def f(
        name: str,
        data: bytes,
        expect: set[int],
        filename: str = "upload.jpg",
        content_type: str = "image/jpeg",
    ) -> NastyFile:
        return NastyFile(name, data, frozenset(expect), filename, content_type)

    return [
        # --- pixel bombs: huge declared dimensions, tiny files
        f("png-100000x100000-header-only", png_raw(100_000, 100_000), {TOO_LARGE}, "a.png"),
        f("png-2^31-1-width", png_raw(2**31 - 1, 1, idat=b""), {TOO_LARGE, CORRUPT}, "a.png"),
        f(
            "png-65535x65535-zlib",
            png_raw(65535, 65535, idat=zlib.compress(b"\0" * 4096)),
            {TOO_LARGE},
            "a.png",
        ),
        f("jpeg-sof-65500x65500", jpeg_with_dimensions(65500, 65500), {TOO_LARGE}),
        f("jpeg-sof-65535x1", jpeg_with_dimensions(65535, 1), {OK, CORRUPT}),
        f(
            "webp-vp8-16383x16383",
            webp_vp8_dimensions(16383, 16383),
            {TOO_LARGE, CORRUPT},
            "a.webp",
        ),
        f(
            "webp-vp8x-canvas-16Mx16M",
            webp_vp8x_canvas(1 << 24, 1 << 24),
            {TOO_LARGE, CORRUPT},
            "a.webp",
        ),
        f("bmp-100000x100000", bmp_header(100_000, 100_000), {TOO_LARGE}, "a.bmp"),
        f("bmp-top-down-huge", bmp_header(50_000, -50_000), {TOO_LARGE}, "a.bmp"),
        f("bmp-1xint32max", bmp_header(1, 2**31 - 1), {TOO_LARGE}, "a.bmp"),
        # --- real decompression bombs kept just under the limit: must decode, bounded memory
        f("png-zeros-just-under-limit", png_zero_pixels(side, side), {OK}, "a.png"),
        f("png-zeros-rgba-just-under-limit", png_zero_pixels(side, side, 4), {OK}, "a.png"),
        f("png-zeros-just-over-limit", png_zero_pixels(side + 2, side + 2), {TOO_LARGE}, "a.png"),
        f(
            "jpeg-flat-just-under-limit",
            save_image(Image.new("RGB", (side, side), (9, 9, 9)), "JPEG"),
            {OK},
        ),
        f(
            "png-16bit-just-under-limit",
            save_image(Image.new("I;16", (side, side), 1234), "PNG"),
            {OK},
            "a.png",
        ),
        # --- small files that decode big (issue #11): tiny on disk, just under the pixel limit
        f("png-16bit-grey-bomb", png_flat_bomb(side), {OK}, "a.png"),
        f("png-16bit-rgba-bomb", png_flat_bomb(side, channels=4), {OK}, "a.png"),
        f("png-8bit-grey-alpha-bomb", png_flat_bomb(side, bit_depth=8, channels=2), {OK}, "a.png"),
        f("webp-lossless-bomb", webp_lossless_bomb(side), {OK}, "a.webp"),
        f("webp-lossless-rgba-bomb", webp_lossless_bomb(side, "RGBA"), {OK}, "a.webp"),
        f("bmp-rle8-bomb", bmp_rle8_bomb(side), {OK}, "a.bmp"),
        f("webp-lossless-bomb-over-limit", webp_lossless_bomb(side + 2), {TOO_LARGE}, "a.webp"),
        f("bmp-rle8-bomb-over-limit", bmp_rle8_bomb(side + 2), {TOO_LARGE}, "a.bmp"),
        # --- zero-size dimensions (hand-made headers)
        f("png-0x0", png_raw(0, 0, idat=zlib.compress(b"")), {CORRUPT, UNSUPPORTED}, "a.png"),
        f("png-0x10", png_raw(0, 10, idat=zlib.compress(b"")), {CORRUPT, UNSUPPORTED}, "a.png"),
        f("bmp-0x0", bmp_header(0, 0, pixels=b""), {CORRUPT, UNSUPPORTED}, "a.bmp"),
        f("jpeg-sof-0x0", jpeg_with_dimensions(0, 0), {CORRUPT, UNSUPPORTED}),
        f("webp-vp8-0x0", webp_vp8_dimensions(0, 0), {CORRUPT}, "a.webp"),
        # --- truncated and corrupt
        f("empty", b"", {CORRUPT}),
        f("jpeg-soi-only", b"\xff\xd8\xff", {CORRUPT, UNSUPPORTED}),
        f("jpeg-half", jpeg[: len(jpeg) // 2], {CORRUPT}),
        f("jpeg-no-eoi", jpeg[:-2], {OK, CORRUPT}),
        f("png-half", png[: len(png) // 2], {CORRUPT}, "a.png"),
        f("png-ihdr-only", png[:33], {CORRUPT, UNSUPPORTED}, "a.png"),
        f("png-bad-crc", png[:29] + b"\0\0\0\0" + png[33:], {CORRUPT, UNSUPPORTED}, "a.png"),
        f(
            "png-bad-bit-depth",
            png_raw(8, 8, bit_depth=7, idat=zlib.compress(b"")),
            {CORRUPT, UNSUPPORTED},
            "a.png",
        ),
        f("webp-half", webp[: len(webp) // 2], {CORRUPT}, "a.webp"),
        f("webp-riff-only", b"RIFF\x00\x00\x00\x00WEBP", {CORRUPT, UNSUPPORTED}, "a.webp"),
        f("bmp-half", bmp[: len(bmp) // 2], {CORRUPT}, "a.bmp"),
        f(
            "bmp-offset-past-end",
            bmp_header(8, 8, pixels=b"")[:10]
            + struct.pack("<I", 10**9)
            + bmp_header(8, 8, pixels=b"")[14:],
            {CORRUPT},
            "a.bmp",
        ),
        f("bmp-bpp-13", bmp_header(8, 8, bpp=13), {CORRUPT, UNSUPPORTED}, "a.bmp"),
        # --- polyglots and appended payloads (the image part is real: processed, never echoed)
        f("jpeg+zip", jpeg + zip_bytes, {OK}),
        f("jpeg+html", jpeg + html, {OK}, "a.html", "text/html"),
        f("png+zip", png + zip_bytes, {OK}, "a.png"),
        f(
            "jpeg-php-comment",
            jpeg[:2] + b"\xff\xfe\x00\x20<?php system($_GET['c']); ?>\x00\x00" + jpeg[2:],
            {OK},
        ),
        f(
            "gif-js-polyglot",
            b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=1;alert(document.domain);//"
            + b"\x00" * 16
            + b";",
            {UNSUPPORTED},
            "a.gif",
            "image/gif",
        ),
        f(
            "real-gif",
            save_image(Image.new("P", (8, 8)), "GIF"),
            {UNSUPPORTED},
            "a.gif",
            "image/gif",
        ),
        f("html-as-png", html, {UNSUPPORTED}, "a.png", "image/png"),
        f(
            "svg-script",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
            {UNSUPPORTED},
            "a.svg",
            "image/svg+xml",
        ),
        f("zip-as-jpg", zip_bytes, {UNSUPPORTED}),
        f("pdf-as-jpg", b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", {UNSUPPORTED}),
        f(
            "exe-as-png",
            b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00",
            {UNSUPPORTED},
            "a.png",
            "image/png",
        ),
        f(
            "tiff",
            save_image(Image.new("RGB", (8, 8)), "TIFF"),
            {UNSUPPORTED},
            "a.tif",
            "image/tiff",
        ),
        f(
            "ico",
            save_image(Image.new("RGB", (16, 16)), "ICO"),
            {UNSUPPORTED},
            "a.ico",
            "image/x-icon",
        ),
        f("random-bytes", np.random.default_rng(1).bytes(4096), {UNSUPPORTED}),
        # --- metadata abuse
        f("jpeg-exif-64k-junk", jpeg_with_app1(b"Exif\x00\x00" + b"\xab" * 65000), {OK}),
        f("jpeg-exif-60-segments", jpeg_with_app1(b"Exif\x00\x00" + b"\xcd" * 65000, 60), {OK}),
        f("jpeg-exif-ifd-loop", jpeg_with_app1(exif_with_loop()), {OK}),
        f("jpeg-exif-4000-entries", jpeg_with_app1(exif_many_entries(4000)), {OK}),
        f("jpeg-exif-orientation-0", exif_orientation(0), {OK}),
        f("jpeg-exif-orientation-9", exif_orientation(9), {OK}),
        f("jpeg-exif-orientation-8", exif_orientation(8), {OK}),
        f("jpeg-10000-comments", jpeg_many_markers(10_000), {OK}),
        f("png-ztxt-bomb-64MiB", png_text_bomb(), {OK, CORRUPT}, "a.png"),
        f("png-itxt-4MiB", png_huge_itxt(4 << 20), {OK, CORRUPT}, "a.png"),
        f("png-20000-text-chunks", png_many_chunks(20_000), {OK, CORRUPT}, "a.png"),
        # --- animation
        f("apng-3-frames", apng(3), {OK}, "a.png"),
        f("apng-300-frames", apng(300, 8), {OK}, "a.png"),
        f("apng-lying-frame-count", apng_lying_frame_count(), {OK, CORRUPT}, "a.png"),
        f("webp-animated-5", webp_animated(5), {OK}, "a.webp"),
        # --- bit depths and palettes
        f(
            "png-16bit-gray",
            save_image(
                Image.fromarray(np.arange(4096, dtype=np.uint16).reshape(64, 64) * 16), "PNG"
            ),
            {OK},
            "a.png",
        ),
        f(
            "png-16bit-rgb",
            png_raw(
                8,
                8,
                bit_depth=16,
                color_type=2,
                idat=zlib.compress((b"\x00" + b"\xff\x00" * 24) * 8),
            ),
            {OK},
            "a.png",
        ),
        f(
            "png-16bit-rgba",
            png_raw(
                8,
                8,
                bit_depth=16,
                color_type=6,
                idat=zlib.compress((b"\x00" + b"\x12\x34" * 32) * 8),
            ),
            {OK},
            "a.png",
        ),
        f(
            "png-16bit-gray-alpha",
            png_raw(
                8,
                8,
                bit_depth=16,
                color_type=4,
                idat=zlib.compress((b"\x00" + b"\x80\x00" * 16) * 8),
            ),
            {OK},
            "a.png",
        ),
        f(
            "png-constant-16bit",
            save_image(Image.new("I;16", (32, 32), 65535), "PNG"),
            {OK},
            "a.png",
        ),
        f("png-palette", save_image(noise_image(32, 32).convert("P"), "PNG"), {OK}, "a.png"),
        f(
            "png-palette-trns",
            save_image(Image.new("P", (16, 16)), "PNG", transparency=0),
            {OK},
            "a.png",
        ),
        f("png-1bit", save_image(Image.new("1", (33, 17), 1), "PNG"), {OK}, "a.png"),
        f(
            "png-palette-index-out-of-range",
            png_raw(
                4,
                4,
                bit_depth=8,
                color_type=3,
                idat=zlib.compress((b"\x00" + b"\xff" * 4) * 4),
                extra=png_chunk(b"PLTE", b"\x00\x00\x00"),
            ),
            {OK, CORRUPT},
            "a.png",
        ),
        f(
            "png-palette-missing-plte",
            png_raw(
                4, 4, bit_depth=8, color_type=3, idat=zlib.compress((b"\x00" + b"\x01" * 4) * 4)
            ),
            {OK, CORRUPT},
            "a.png",
        ),
        f("bmp-palette-8bit", save_image(noise_image(30, 10).convert("P"), "BMP"), {OK}, "a.bmp"),
        f("bmp-1bit", save_image(Image.new("1", (9, 9)), "BMP"), {OK}, "a.bmp"),
        f(
            "bmp-32bit-rgba",
            save_image(noise_image(16, 16, "RGBA"), "BMP"),
            {OK, UNSUPPORTED},
            "a.bmp",
        ),
        f("jpeg-cmyk", save_image(Image.new("CMYK", (16, 16), (0, 255, 0, 0)), "JPEG"), {OK}),
        f("jpeg-gray", save_image(noise_image(16, 16, "L"), "JPEG"), {OK}),
        f("jpeg-progressive", save_image(noise_image(64, 64), "JPEG", progressive=True), {OK}),
        f(
            "webp-lossless-rgba",
            save_image(noise_image(16, 16, "RGBA"), "WEBP", lossless=True),
            {OK},
            "a.webp",
        ),
        f("png-1x1", save_image(Image.new("RGB", (1, 1)), "PNG"), {OK}, "a.png"),
        f("png-1x20000-strip", save_image(Image.new("RGB", (1, 20000)), "PNG"), {OK}, "a.png"),
        # --- wrong or hostile names and media types (the content decides)
        f("png-named-jpg", png, {OK}, "photo.jpg", "image/jpeg"),
        f("jpeg-named-exe", jpeg, {OK}, "setup.exe", "application/x-msdownload"),
        f("jpeg-path-traversal-name", jpeg, {OK}, "../../../../etc/passwd", "image/jpeg"),
        f(
            "jpeg-long-unicode-name",
            jpeg,
            {OK, BAD_MULTIPART},
            "\u202ejpg.exe" + "\u00e9" * 4000,
            "image/jpeg",
        ),
        f("jpeg-no-content-type", jpeg, {OK}, "a", "application/octet-stream"),
        # --- size limit
        f("over-upload-limit", jpeg + b"\0" * (max_upload_bytes + 1 - len(jpeg)), {TOO_LARGE}),
    ]
