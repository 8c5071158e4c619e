"""Turning an untrusted upload into the model's input, or a clear refusal.

The format is decided by the bytes, never the filename; the pixel count is checked from the header
before any pixel is decoded (decompression bombs). A file of a few bytes can still declare 40
million pixels, so decoding is kept small and predictable:

- `probe_image` reads the header only and says what decoding will cost in memory
  (`ImageProbe.decode_bytes`), so a caller can refuse or queue the work *before* it happens;
- how the pixels are resized is the served model's declaration (`Preprocessing`: resize rule,
  interpolation, size); a model with a reference implementation (the embedded CLIP detector,
  Penguin-12) gets a full-size decode and exactly its reference's resize, pixel for pixel;
- for the legacy squash/bilinear bundles only, JPEGs are decoded at reduced scale when the model
  needs fewer pixels (`Image.draft`);
- every other conversion (16-bit scaling, transparency onto white, palette and CMYK to RGB) runs
  over strips of rows that are box-reduced as they go (`Image.reduce`, what `resize`'s
  ``reducing_gap`` does internally), so no full-size float or RGBA copy is ever made: the decoded
  image itself is the only full-size buffer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError
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

    @property
    def decode_min_side(self) -> int | None:
        """Shortest side the decode may reduce to; None = full size, pixel for pixel.

        Only the legacy squash/bilinear bundles (no reference to match) take the reduced decode."""
        return self.size * DECODE_MARGIN if self == Preprocessing() else None

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


# How much larger than the model's input side the decoded image is kept before the final resize:
# the same margin as ``resize(reducing_gap=2.0)``, so the result is practically what a full-size
# decode gives (Pillow documents reducing_gap >= 2 as indistinguishable from a plain resize).
DECODE_MARGIN = 2
# Rows are converted in strips of about this many bytes (float64 when scaling 16-bit data).
_STRIP_BYTES = 8 << 20
# Bytes per pixel Pillow holds in memory by mode (RGB is stored padded to 4 bytes).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Full-size copies made while decoding, by format: libwebp keeps its canvas and the previous
# frame, hands Pillow a copy, and Pillow copies it into the image (measured: 4x the image).
_DECODE_COPIES = {"WEBP": 4}
_ORIENTATION_METHODS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class ImageProbe:
    """An opened (header-only) image and what decoding it will cost."""

    image: Image.Image
    format: str
    width: int  # as stored in the file, before any reduced-scale decoding
    height: int
    decode_bytes: int  # peak memory the decode step needs, estimated from the header

    def describe(self) -> str:
        return f"{self.width}x{self.height} {self.format} ({self.image.mode})"


def prepare_image(
    data: bytes | BinaryIO,
    *,
    preprocessing: Preprocessing,
    max_pixels: int,
    max_decode_bytes: int | None = None,
) -> PreparedImage:
    """Validate ``data`` and return it as the model wants it: RGB, EXIF orientation applied,
    resized as ``preprocessing`` says."""
    probe = probe_image(data, max_pixels=max_pixels, min_side=preprocessing.decode_min_side)
    if max_decode_bytes is not None:
        check_decode_budget(probe, max_decode_bytes)
    return prepare_probed(probe, preprocessing=preprocessing)


def prepare_probed(probe: ImageProbe, *, preprocessing: Preprocessing) -> PreparedImage:
    """The decode and resize half of `prepare_image`, for a caller that budgets the decode."""
    rgb = decode_rgb(probe, min_side=preprocessing.decode_min_side)
    if preprocessing.decode_min_side is not None:
        size = preprocessing.size
        resized = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    else:
        resized = resize_for_model(rgb, preprocessing)
    pixels = np.asarray(resized, dtype=np.uint8)
    return PreparedImage(pixels, probe.format, probe.width, probe.height, preprocessing)


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


def probe_image(data: bytes | BinaryIO, *, max_pixels: int, min_side: int | None) -> ImageProbe:
    """Open ``data`` without decoding pixels; JPEGs are set to decode at reduced scale.

    ``min_side`` is the shortest side the caller needs after decoding (the model's input side
    with a margin): a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both
    sides at least that long. ``None``: full size, pixel for pixel what a plain decode gives (for
    a model whose reference implementation must be matched exactly).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        if not data:
            raise CorruptImage("The uploaded file is empty.")
        file_size = len(data)
        stream: BinaryIO = io.BytesIO(data)
    else:
        stream = data
        stream.seek(0, io.SEEK_END)
        file_size = stream.tell()
        stream.seek(0)
        if not file_size:
            raise CorruptImage("The uploaded file is empty.")
    with warnings.catch_warnings():
        # Our own pixel limit replaces Pillow's bomb warning, and Pillow warns once per bad EXIF
        # tag: one hostile upload could otherwise write thousands of log lines.
        warnings.simplefilter("ignore")
        image = _open(stream, max_pixels)
    fmt = image.format or "unknown"
    width, height = image.size
    if fmt == "JPEG" and min_side is not None:
        image.draft("RGB", (min_side, min_side))
    return ImageProbe(image, fmt, width, height, _decode_cost(image, fmt, min_side) + file_size)


def check_decode_budget(probe: ImageProbe, max_decode_bytes: int) -> None:
    """Refuse (413) an image whose decoding would take more memory than one request may use."""
    if probe.decode_bytes > max_decode_bytes:
        raise ImageTooLarge(
            f"Decoding this {probe.describe()} image would take about "
            f"{probe.decode_bytes / 2**20:,.0f} MiB of memory; the limit per image is "
            f"{max_decode_bytes / 2**20:,.0f} MiB. Send fewer pixels, or a JPEG."
        )


def _decode_cost(image: Image.Image, fmt: str, min_side: int | None) -> int:
    """The decode step's peak: the full-size decoded buffers plus the reduced RGB output."""
    width, height = image.size  # after `draft`, for a JPEG
    per_pixel = _BYTES_PER_PIXEL.get(image.mode, 4)
    factor = _reduce_factor(width, height, min_side)
    output = -(-width // factor) * -(-height // factor) * 4
    strips = 0 if image.mode == "RGB" else 4 * _STRIP_BYTES  # RGB is only reduced, not converted
    return width * height * per_pixel * _DECODE_COPIES.get(fmt, 1) + output + strips


def _reduce_factor(width: int, height: int, min_side: int | None) -> int:
    if min_side is None:
        return 1
    return max(1, min(width, height) // max(1, min_side))


def decode_rgb(probe: ImageProbe, *, min_side: int | None) -> Image.Image:
    """Decode the probed image to 8-bit RGB, box-reduced to no less than ``min_side`` (shorter
    side; ``None``: full size) and turned upright (EXIF orientation). Memory: the decoded image,
    the RGB output, and small strips."""
    image, fmt = probe.image, probe.format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise CorruptImage(
                f"The {fmt} image is truncated or corrupt and cannot be decoded ({exc})."
            ) from exc
        if fmt == "WEBP":
            _release_webp_buffers(image)
        orientation = _orientation(image)
    rgb = _reduced_rgb(image, _reduce_factor(*image.size, min_side))
    method = _ORIENTATION_METHODS.get(orientation)
    return rgb.transpose(method) if method is not None else rgb


def _release_webp_buffers(image: Image.Image) -> None:
    """Drop what libwebp and Pillow keep after a WebP is loaded: the decoder's two full-size
    canvases and the frame copy (the image itself is complete without them)."""
    if hasattr(image, "_decoder"):
        delattr(image, "_decoder")
    if isinstance(image, ImageFile.ImageFile):
        image.fp = None


def _orientation(image: Image.Image) -> int:
    # A damaged EXIF block is no reason to refuse pixels that decoded fine (nor to log its tags).
    with contextlib.suppress(OSError, ValueError, SyntaxError, KeyError, TypeError):
        value = image.getexif().get(0x0112)
        return int(value) if value is not None else 1
    return 1


def _open(stream: BinaryIO, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(stream, formats=SUPPORTED_FORMATS)
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


def _reduced_rgb(image: Image.Image, factor: int) -> Image.Image:
    """``image`` as RGB, box-reduced by ``factor``, strip by strip.

    Strips are whole multiples of ``factor`` rows, so the box filter sees exactly the blocks a
    whole-image `Image.reduce` would. Each strip is reduced *before* the costly conversions
    (16-bit stretch, compositing), which then run on 1/factor^2 of the pixels: averaging commutes
    with both (a linear stretch; compositing over white is linear in premultiplied colour, which
    is how Pillow reduces RGBA), up to 8-bit rounding.
    """
    if image.mode == "RGB":
        return image.reduce(factor) if factor > 1 else image
    width, height = image.size
    scale = _wide_range(image)
    rows = max(factor, max(1, _STRIP_BYTES // (width * 4)) // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        out.paste(_strip_to_rgb(strip, factor, scale), (0, top // factor))
    return out


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _wide_range(image: Image.Image) -> tuple[float, float] | None:
    """The value range a 16-bit, 32-bit or float image is mapped to 0-255 from.

    16-bit samples map from their full range (value * 255 / 65535: a dark photo stays dark, as
    every viewer shows it); 32-bit and float samples have no fixed range: the whole image's.
    """
    if image.mode not in _WIDE_MODES:
        return None
    low, high = (float(v) for v in image.getextrema())  # type: ignore[arg-type]
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        return 0.0, 65535.0
    return low, high


def _strip_to_rgb(
    strip: Image.Image, factor: int, scale: tuple[float, float] | None
) -> Image.Image:
    """Any mode to 8-bit RGB, reduced by ``factor``: wide values stretched to 0-255 over the
    whole image's range, transparency onto white, palettes and CMYK converted."""
    mode = strip.mode
    if mode in _WIDE_MODES:
        wide = strip if mode == "F" else strip.convert("F")
        if factor > 1:
            wide = wide.reduce(factor)
        array = np.asarray(wide, dtype=np.float64)  # a reduced strip, never the whole image
        low, high = scale if scale is not None else (float(array.min()), float(array.max()))
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in strip.info):
        rgba = strip.convert("RGBA")
        if factor > 1:
            rgba = rgba.reduce(factor)  # Pillow averages RGBA premultiplied
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("L", "CMYK", "YCbCr", "LAB", "HSV") and factor > 1:
        strip = strip.reduce(factor)
        factor = 1
    rgb = strip.convert("RGB")
    return rgb.reduce(factor) if factor > 1 else rgb
