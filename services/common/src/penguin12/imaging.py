"""Turning an untrusted upload into the model's input, or a clear refusal.

The format is decided by the bytes, never the filename; the pixel count is checked from the header
before any pixel is decoded (decompression bombs); JPEGs are decoded at reduced scale when the
model needs fewer pixels (`Image.draft`), which roughly halves preprocessing time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
SUPPORTED_MEDIA_TYPES = "image/jpeg, image/png, image/webp, image/bmp"


class ImageRejected(ValueError):
    """An upload we refuse; ``status_code`` is the HTTP answer, the message is for a person."""

    status_code = 422


class UnsupportedImage(ImageRejected):
    status_code = 415


class ImageTooLarge(ImageRejected):
    status_code = 413


class CorruptImage(ImageRejected):
    status_code = 422


@dataclass(frozen=True)
class PreparedImage:
    pixels: np.ndarray  # uint8, size x size x 3, RGB
    source_format: str
    original_width: int
    original_height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pixels.tobytes()).hexdigest()


def prepare_image(data: bytes, *, size: int, max_pixels: int) -> PreparedImage:
    """Validate ``data`` and return it as a size x size RGB array (EXIF orientation applied)."""
    if not data:
        raise CorruptImage("The uploaded file is empty.")
    with warnings.catch_warnings():
        # Our own pixel limit replaces Pillow's bomb warning, and Pillow warns once per bad EXIF
        # tag: one hostile upload could otherwise write thousands of log lines.
        warnings.simplefilter("ignore")
        image = _open(data, max_pixels)
        fmt = image.format or "unknown"
        width, height = image.size
        if fmt == "JPEG":
            image.draft("RGB", (size, size))
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise CorruptImage(
                f"The {fmt} image is truncated or corrupt and cannot be decoded ({exc})."
            ) from exc
    # A damaged EXIF block is no reason to refuse pixels that decoded fine (nor to log its tags).
    with (
        warnings.catch_warnings(),
        contextlib.suppress(OSError, ValueError, SyntaxError, KeyError, TypeError),
    ):
        warnings.simplefilter("ignore")
        image = ImageOps.exif_transpose(image) or image
    rgb = _to_rgb(image)
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(resized, dtype=np.uint8)
    return PreparedImage(pixels, fmt, width, height)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnsupportedImage(
            f"The file is not a supported image. Send one of: {SUPPORTED_MEDIA_TYPES}."
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"The image has too many pixels (limit {max_pixels:,}).") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptImage(f"The image header is corrupt and cannot be read ({exc}).") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"The image has an empty dimension ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}."
        )
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animated WebP/PNG: judge the first frame
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB: transparency onto white, 16-bit and float scaled, CMYK converted."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
            # 16-bit samples: the same brightness in 8 bits (a dark photo stays dark).
            scaled = array * (255.0 / 65535.0)
        else:  # 32-bit or float samples have no fixed range: stretch what is there
            scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(np.rint(scaled).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image
