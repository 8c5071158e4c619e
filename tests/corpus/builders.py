"""Byte-level builders of hostile image files, by format (PNG, JPEG, WebP, BMP): lying headers,
decompression bombs, chunk floods. `nasty.build()` makes the fuzz corpus from them; the hostile
uploads benchmark (bench/hostile_uploads.py) sends the same bombs."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image


def save_image(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if channels == 1 else array, mode)


# ------------------------------------------------------------------------------------ PNG


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_raw(
    width: int,
    height: int,
    *,
    bit_depth: int = 8,
    color_type: int = 2,
    idat: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    """A hand-made PNG: IHDR as given (no sanity checks), optional chunks, IDAT, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr) + extra
    if idat is not None:
        body += png_chunk(b"IDAT", idat)
    return PNG_SIGNATURE + body + png_chunk(b"IEND", b"")


def png_zero_pixels(width: int, height: int, channels: int = 3) -> bytes:
    """A real, decodable all-black PNG whose pixels compress ~1000:1 (a zip bomb made honest)."""
    row = b"\x00" + b"\x00" * (width * channels)
    compressor = zlib.compressobj(9)
    out = bytearray()
    for _ in range(height):
        out += compressor.compress(row)
    out += compressor.flush()
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    return png_raw(width, height, color_type=color_type, idat=bytes(out))


def apng(frames: int, size: int = 16) -> bytes:
    images = [Image.new("RGB", (size, size), (i * 40 % 256, 0, 0)) for i in range(frames)]
    return save_image(
        images[0], "PNG", save_all=True, append_images=images[1:], duration=50, loop=0
    )


def apng_lying_frame_count() -> bytes:
    """An APNG whose acTL claims 2^31-1 frames."""
    data = bytearray(apng(2))
    index = data.index(b"acTL")
    payload = struct.pack(">II", 2**31 - 1, 0)
    data[index + 4 : index + 12] = payload
    data[index + 12 : index + 16] = struct.pack(">I", zlib.crc32(b"acTL" + payload))
    return bytes(data)


def png_text_bomb() -> bytes:
    """A zTXt chunk that inflates to 64 MiB of zeros."""
    text = b"Comment\x00\x00" + zlib.compress(b"\x00" * (64 << 20), 9)
    image = save_image(Image.new("RGB", (8, 8)), "PNG")
    return image[:33] + png_chunk(b"zTXt", text) + image[33:]


def png_huge_itxt(size: int) -> bytes:
    text = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + b"A" * size
    image = save_image(Image.new("RGB", (8, 8)), "PNG")
    return image[:33] + png_chunk(b"iTXt", text) + image[33:]


def png_many_chunks(count: int) -> bytes:
    image = save_image(Image.new("RGB", (8, 8)), "PNG")
    junk = b"".join(png_chunk(b"tEXt", b"k\x00" + str(i).encode()) for i in range(count))
    return image[:33] + junk + image[33:]


def png_flat_bomb(side: int, *, bit_depth: int = 16, channels: int = 1) -> bytes:
    """A valid all-zero PNG of ``side`` x ``side``: 6300 px 16-bit grey is 77 KB on disk and
    ~80 MB decoded (the review's "small file that decodes big")."""
    row = b"\x00" * (1 + side * channels * bit_depth // 8)
    compressor = zlib.compressobj(9)
    out = bytearray()
    for _ in range(side):
        out += compressor.compress(row)
    out += compressor.flush()
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    return png_raw(side, side, bit_depth=bit_depth, color_type=color_type, idat=bytes(out))


@functools.cache
def webp_lossless_bomb(side: int, mode: str = "RGB") -> bytes:
    """A blank lossless WebP of ``side`` x ``side``: about 1.6 KB at 6300 px, and libwebp needs
    four full-size copies to decode it (~640 MB at 6300 px)."""
    return save_image(Image.new(mode, (side, side)), "WEBP", lossless=True, quality=0, method=0)


def bmp_rle8_bomb(side: int) -> bytes:
    """An RLE8-compressed 8-bit BMP of one colour: 2 bytes per 255 pixels."""
    row = b""
    left = side
    while left:
        run = min(255, left)
        row += bytes((run, 1))
        left -= run
    pixels = (row + b"\x00\x00") * side + b"\x00\x01"  # end of line ... end of bitmap
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    dib = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    offset = 14 + len(dib) + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return header + dib + palette + pixels


# ------------------------------------------------------------------------------------ JPEG


def jpeg_with_dimensions(width: int, height: int) -> bytes:
    """A real tiny JPEG whose SOF0 header is patched to declare ``width`` x ``height``."""
    data = bytearray(save_image(noise_image(16, 16), "JPEG", quality=80))
    index = data.index(b"\xff\xc0")
    data[index + 5 : index + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_with_app1(payload: bytes, copies: int = 1) -> bytes:
    """APP1 segments right after SOI (each at most 65533 bytes of payload)."""
    base = save_image(noise_image(32, 32), "JPEG", quality=80)
    segments = b"".join(
        b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload for _ in range(copies)
    )
    return base[:2] + segments + base[2:]


def exif_with_loop() -> bytes:
    """An EXIF IFD whose next-IFD offset points at itself, and an ExifIFD pointer to itself."""
    entries = [
        (0x0112, 3, 1, 6),  # orientation: rotate
        (0x8769, 4, 1, 8),  # ExifIFD -> offset 8 = this IFD again
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 8)  # next IFD: itself
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def exif_many_entries(count: int) -> bytes:
    ifd = struct.pack("<H", count)
    for i in range(count):
        ifd += struct.pack("<HHII", 0x9000 + (i % 4096), 7, 0x7FFFFFFF, 0xFFFFFF00)
    ifd += struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return save_image(noise_image(40, 20), "JPEG", exif=exif.tobytes())


def jpeg_many_markers(count: int) -> bytes:
    base = save_image(noise_image(16, 16), "JPEG", quality=80)
    comments = b"".join(b"\xff\xfe" + struct.pack(">H", 3) + b"x" for _ in range(count))
    return base[:2] + comments + base[2:]


# ------------------------------------------------------------------------------------ WebP


def webp_vp8_dimensions(width: int, height: int) -> bytes:
    """A real lossy WebP whose VP8 frame header is patched to declare another size."""
    data = bytearray(save_image(noise_image(16, 16), "WEBP", quality=80))
    index = data.index(b"\x9d\x01\x2a")
    data[index + 3 : index + 7] = struct.pack("<HH", width & 0x3FFF, height & 0x3FFF)
    return bytes(data)


def webp_vp8x_canvas(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP with an RGBA image inside, its canvas patched to ``width`` x ``height``."""
    data = bytearray(save_image(noise_image(16, 16, "RGBA"), "WEBP", quality=80))
    index = data.index(b"VP8X")
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    data[index + 12 : index + 18] = canvas
    return bytes(data)


def webp_animated(frames: int) -> bytes:
    images = [Image.new("RGB", (16, 16), (0, i * 30 % 256, 0)) for i in range(frames)]
    return save_image(images[0], "WEBP", save_all=True, append_images=images[1:], duration=40)


# ------------------------------------------------------------------------------------ BMP


def bmp_header(width: int, height: int, bpp: int = 24, pixels: bytes = b"\x00" * 64) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    offset = 14 + len(dib)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + dib + pixels
