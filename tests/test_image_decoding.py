"""Decoding an upload into the model's pixels: every mode and format to RGB with its colours,
orientation and first frame kept, clear refusals, and decoding bounded in memory (issue #11,
item 1)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support.images import encode, prepare

from penguin12.imaging import (
    CorruptImage,
    ImageTooLarge,
    Preprocessing,
    UnsupportedImage,
    prepare_image,
)


def test_exif_orientation_is_honoured() -> None:
    # Stored sideways: left half red, right half blue; EXIF 6 says "rotate 90 degrees clockwise".
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = prepare(encode(stored, "JPEG", exif=exif, quality=95))
    top, bottom = pixels[:100].reshape(-1, 3).mean(0), pixels[124:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60, top  # red on top once upright
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("L", "PNG"),
        ("RGBA", "PNG"),
        ("P", "PNG"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("RGB", "WEBP"),
        ("RGB", "BMP"),
        ("LA", "WEBP"),
    ],
)
def test_every_mode_becomes_rgb(mode: str, fmt: str) -> None:
    image = Image.new(mode, (64, 48))
    pixels = prepare(encode(image, fmt))
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8


def quadrants(pixels: np.ndarray) -> list[np.ndarray]:
    """Mean RGB of the middle of each quadrant (top-left, top-right, bottom-left, bottom-right)."""
    centres = [(56, 56), (56, 168), (168, 56), (168, 168)]
    return [pixels[r - 24 : r + 24, c - 24 : c + 24].reshape(-1, 3).mean(0) for r, c in centres]


def four_patches(mode: str, colours: list[object], size: int = 64) -> Image.Image:
    image = Image.new(mode, (size, size))
    half = size // 2
    boxes = [
        (0, 0, half, half),
        (half, 0, size, half),
        (0, half, half, size),
        (half, half, size, size),
    ]
    for colour, box in zip(colours, boxes, strict=True):
        image.paste(colour, box)  # type: ignore[arg-type]
    return image


def test_cmyk_colours_are_converted_not_just_the_shape() -> None:
    # Pure cyan, magenta, yellow and black ink: their RGB is known exactly.
    cmyk = four_patches("CMYK", [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255)])
    expected = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0)]
    for got, want in zip(
        quadrants(prepare(encode(cmyk, "JPEG", quality=95))), expected, strict=True
    ):
        assert np.abs(got - np.array(want)).max() <= 8, (got, want)


def test_sixteen_bit_grey_keeps_its_brightness() -> None:
    # 16-bit samples scale to 8 bits as value * 255 / 65535: a dark image is not stretched to
    # full contrast, and grey stays grey in all three channels.
    values = [0, 8192, 32768, 65535]
    grey = np.zeros((64, 64), dtype=np.uint16)
    grey[:32, :32], grey[:32, 32:], grey[32:, :32], grey[32:, 32:] = values
    image = Image.fromarray(grey)
    assert image.mode == "I;16"
    for got, value in zip(quadrants(prepare(encode(image, "PNG"))), values, strict=True):
        assert np.abs(got - value * 255 / 65535).max() <= 2, (got, value)


def test_palette_and_grey_colours_survive() -> None:
    palette = four_patches("RGB", [(200, 30, 30), (30, 200, 30), (30, 30, 200), (250, 250, 250)])
    pixels = prepare(encode(palette.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"))
    expected = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (250, 250, 250)]
    for got, want in zip(quadrants(pixels), expected, strict=True):
        assert np.abs(got - np.array(want)).max() <= 4, (got, want)


def test_transparency_is_composited_on_white() -> None:
    pixels = prepare(encode(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "PNG"))
    assert pixels.min() == 255


def test_sixteen_bit_range_is_kept() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (16, 1))
    pixels = prepare(encode(Image.fromarray(ramp), "PNG"))
    assert pixels[..., 0].min() < 10 and pixels[..., 0].max() > 245


def test_animated_image_is_judged_on_its_first_frame() -> None:
    red = Image.new("RGB", (48, 48), (220, 20, 20))
    blue = Image.new("RGB", (48, 48), (20, 20, 220))
    green = Image.new("RGB", (48, 48), (20, 220, 20))
    for fmt in ("PNG", "WEBP"):
        data = encode(
            red, fmt, save_all=True, append_images=[blue, green], duration=100, lossless=True
        )
        assert Image.open(io.BytesIO(data)).n_frames == 3, fmt
        pixels = prepare(data)
        assert np.abs(pixels.reshape(-1, 3).mean(0) - (220, 20, 20)).max() <= 3, fmt


def test_refusals_say_why() -> None:
    with pytest.raises(UnsupportedImage, match="not a supported image"):
        prepare(encode(Image.new("RGB", (8, 8)), "GIF"))
    with pytest.raises(UnsupportedImage):
        prepare(b"%PDF-1.4 definitely not an image")
    with pytest.raises(CorruptImage, match="empty"):
        prepare(b"")
    jpeg = encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        prepare(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageTooLarge, match=r"3000x3000 = 9,000,000 pixels"):
        prepare(encode(Image.new("L", (3000, 3000)), "PNG"))


# --- decoding bounded in memory (issue #11, item 1) -----------------------------------------


def test_sixteen_bit_bomb_decodes_without_full_size_float_copies() -> None:
    # A 77 KB PNG that decodes to 6300x6300 16-bit pixels. It used to be stretched through two
    # full-size float64 arrays (2 x 318 MB); now only strips of a few MB are ever converted.
    import tracemalloc

    from corpus.nasty import png_flat_bomb

    data = png_flat_bomb(6300)
    assert len(data) < 80_000
    tracemalloc.start()  # numpy reports its buffers to tracemalloc; Pillow's image is not counted
    try:
        pixels = prepare_image(data, preprocessing=Preprocessing(), max_pixels=40_000_000).pixels
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pixels.shape == (224, 224, 3)
    assert peak < 64 * 2**20, f"numpy peaked at {peak / 2**20:.0f} MiB"


def test_decode_cost_is_known_before_any_pixel_is_decoded() -> None:
    from corpus.nasty import png_flat_bomb, webp_lossless_bomb

    from penguin12.imaging import check_decode_budget, probe_image

    webp = probe_image(webp_lossless_bomb(6300), max_pixels=40_000_000, min_side=448)
    assert len(webp_lossless_bomb(6300)) < 100
    # libwebp holds four full-size copies: ~606 MiB for 6300x6300, known from the header.
    assert 600 * 2**20 < webp.decode_bytes < 700 * 2**20
    with pytest.raises(ImageTooLarge, match=r"6300x6300 WEBP .* about 6\d\d MiB .* 512 MiB"):
        check_decode_budget(webp, 512 * 2**20)
    png = probe_image(png_flat_bomb(6300), max_pixels=40_000_000, min_side=448)
    assert 75 * 2**20 < png.decode_bytes < 130 * 2**20  # 2 bytes per pixel, plus strips
    check_decode_budget(png, 512 * 2**20)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P-transparent", "I;16", "L", "CMYK"])
def test_strip_conversion_matches_converting_the_whole_image(mode: str) -> None:
    # The strip-by-strip decode must give what the old whole-image conversion gave (up to 8-bit
    # rounding): compositing on white, 16-bit scaling and box reduction commute.
    from penguin12.imaging import _reduced_rgb

    rng = np.random.default_rng(3)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(1000, 60000, (900, 1300), dtype=np.uint16))
        array = np.asarray(image, dtype=np.float64)
        whole = Image.fromarray((array * (255.0 / 65535.0)).astype(np.uint8))  # 16-bit range
        whole = whole.convert("RGB")
    else:
        rgba = Image.fromarray(rng.integers(0, 256, (900, 1300, 4), dtype=np.uint8), "RGBA")
        image = {
            "RGBA": rgba,
            "LA": rgba.convert("LA"),
            "P-transparent": rgba.convert("RGB").quantize(64),
            "L": rgba.convert("L"),
            "CMYK": rgba.convert("CMYK"),
        }[mode]
        if mode == "P-transparent":
            image.info["transparency"] = 5
        if image.mode in ("RGBA", "LA", "P"):
            source = image.convert("RGBA")
            white = Image.new("RGBA", source.size, (255, 255, 255, 255))
            whole = Image.alpha_composite(white, source).convert("RGB")
        else:
            whole = image.convert("RGB")
    expected = np.asarray(whole.reduce(7), dtype=np.int16)
    got = np.asarray(_reduced_rgb(image, 7), dtype=np.int16)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 3, np.abs(got - expected).max()
    assert np.abs(got - expected).mean() < 0.6


def test_full_size_decode_is_pixel_exact_without_full_size_copies() -> None:
    # min_side=None (a model that must match its reference exactly): no reduced-scale decode,
    # and the strip-wise conversion gives exactly what converting the whole image gives.
    from penguin12.imaging import decode_rgb, probe_image

    rng = np.random.default_rng(5)
    rgba = Image.fromarray(rng.integers(0, 256, (300, 500, 4), dtype=np.uint8), "RGBA")
    probe = probe_image(encode(rgba, "PNG"), max_pixels=4_000_000, min_side=None)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    assert np.array_equal(np.asarray(decode_rgb(probe, min_side=None)), expected)
    jpeg = encode(rgba.convert("RGB"), "JPEG", quality=90)
    probe = probe_image(jpeg, max_pixels=4_000_000, min_side=None)
    full = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert np.array_equal(np.asarray(decode_rgb(probe, min_side=None)), full)
