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
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
SUPPORTED_MEDIA_TYPES = "image/jpeg, image/png, image/webp, image/bmp"


Resize = Literal["squash", "shorter_side_center_crop"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]

_RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class Preprocessing(BaseModel):
    """How a model wants its pixels prepared: declared by the model bundle, applied here.

    ``squash`` resizes straight to size x size (aspect ratio not kept); ``shorter_side_center_crop``
    scales the shorter side to ``size`` (``round``ed, as CLIP's reference does) and cuts the
    centre square. Normalisation (mean/std) is the model's own step, on the uint8 pixels made here.
    The ``key`` travels with every prepared image so that a model fed pixels prepared for another
    model fails the job instead of answering confidently wrong.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    resize: Resize = "squash"
    interpolation: Interpolation = "bilinear"
    size: int = Field(224, gt=0, le=4096)

    @property
    def key(self) -> str:
        return f"{self.resize}/{self.interpolation}/{self.size}"

    @classmethod
    def from_key(cls, key: str) -> Preprocessing:
        """Parse ``resize/interpolation/size`` (e.g. ``shorter_side_center_crop/bicubic/224``)."""
        parts = key.strip().split("/")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(
                f"preprocessing {key!r} is not resize/interpolation/size, "
                "e.g. shorter_side_center_crop/bicubic/224 or squash/lanczos/128"
            )
        return cls.model_validate(
            {"resize": parts[0], "interpolation": parts[1], "size": int(parts[2])}
        )


#: What the embedded CLIP detector needs (the default served model): see penguin12_model.embedded.
CLIP_PREPROCESSING = Preprocessing(
    resize="shorter_side_center_crop", interpolation="bicubic", size=224
)


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
    preprocessing: Preprocessing

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pixels.tobytes()).hexdigest()


def prepare_image(data: bytes, *, preprocessing: Preprocessing, max_pixels: int) -> PreparedImage:
    """Validate ``data`` and return it as the model wants it: RGB, EXIF orientation applied,
    resized as ``preprocessing`` says."""
    size = preprocessing.size
    # The reduced-scale JPEG decode changes pixels; only the legacy squash/bilinear path (the
    # torchvision demo bundles) takes it. Models with a reference implementation get full decodes.
    fast_decode = preprocessing == Preprocessing()
    if not data:
        raise CorruptImage("The uploaded file is empty.")
    with warnings.catch_warnings():
        # Our own pixel limit replaces Pillow's bomb warning, and Pillow warns once per bad EXIF
        # tag: one hostile upload could otherwise write thousands of log lines.
        warnings.simplefilter("ignore")
        image = _open(data, max_pixels)
        fmt = image.format or "unknown"
        width, height = image.size
        if fmt == "JPEG" and fast_decode:
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
    if fast_decode:
        resized = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    else:
        resized = resize_for_model(rgb, preprocessing)
    pixels = np.asarray(resized, dtype=np.uint8)
    return PreparedImage(pixels, fmt, width, height, preprocessing)


def resize_for_model(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """The model's resize rule, exactly as its reference implementation does it."""
    size = preprocessing.size
    resample = _RESAMPLING[preprocessing.interpolation]
    if preprocessing.resize == "squash":
        return image.resize((size, size), resample)
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = round(width * scale), round(height * scale)
    resized = image.resize((new_w, new_h), resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return resized.crop((left, top, left + size, top + size))


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
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image
