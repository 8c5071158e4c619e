"""Upload validation: what a person sends, and what they are told when it is refused."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from conftest import Stack, read_topic
from penguin12.imaging import CorruptImage, ImageTooLarge, UnsupportedImage, prepare_image
from penguin12.schemas import ImageJob


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def prepare(data: bytes) -> np.ndarray:
    return prepare_image(data, size=224, max_pixels=4_000_000).pixels


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


# --- through the API, on the real system ---------------------------------------------------


def test_format_is_judged_by_content_not_name(stack: Stack) -> None:
    png = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG")
    response = stack.submit(png, filename="holiday.jpg", content_type="image/jpeg")
    assert response.status_code == 202, response.text
    assert stack.wait_final(response.json()["request_id"])["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("data", "status", "phrase"),
    [
        (b"", 422, "empty"),
        (b"hello, I am a text file", 415, "not a supported image"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), 415, "image/jpeg, image/png"),
        (encode(Image.new("L", (2500, 2500)), "PNG"), 413, "limit is 4,000,000"),
    ],
)
def test_api_refuses_bad_uploads_clearly(
    stack: Stack, data: bytes, status: int, phrase: str
) -> None:
    response = stack.submit(data)
    assert response.status_code == status, response.text
    assert phrase in response.json()["detail"]


def test_truncated_jpeg_is_refused(stack: Stack, photos: dict[str, bytes]) -> None:
    data = photos["chelsea.jpg"]
    response = stack.submit(data[: len(data) // 3])
    assert response.status_code == 422
    assert "truncated or corrupt" in response.json()["detail"]


def test_oversized_file_is_413(stack: Stack) -> None:
    response = stack.submit(b"\xff\xd8\xff" + b"\0" * (10 * 2**20))
    assert response.status_code == 413
    assert "MiB limit" in response.json()["detail"]


def test_missing_file_field_is_422(stack: Stack) -> None:
    import httpx

    response = httpx.post(stack.url("preprocessor", "/v1/infer"), data={"x": "1"}, timeout=10)
    assert response.status_code == 422


def test_maximum_size_upload_flows_through_kafka(stack: Stack) -> None:
    # Random noise does not compress: a PNG just under the 10 MiB limit.
    noise = np.random.default_rng(0).integers(0, 256, (1800, 1900, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG", compress_level=0)
    assert 9 * 2**20 < len(data) <= 10 * 2**20
    response = stack.submit(data, "noise.png", "image/png")
    assert response.status_code == 202, response.text
    assert stack.wait_final(response.json()["request_id"])["status"] == "COMPLETED"


def test_an_animated_upload_is_judged_on_its_first_frame(stack: Stack) -> None:
    """What the pipeline judges is the first frame: read the job the preprocessor queued."""
    frames = [Image.new("RGB", (96, 96), c) for c in ((230, 30, 30), (30, 30, 230), (30, 230, 30))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    response = stack.submit(data, "animated.webp", "image/webp")
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    assert stack.wait_final(request_id)["status"] == "COMPLETED"
    [record] = [
        m
        for m in read_topic(stack.infra.bootstrap, stack.topic("preprocessed"), quiet_s=1)
        if m.key().decode() == request_id
    ]
    job = ImageJob.model_validate_json(record.value())
    pixels = job.array()
    assert np.abs(pixels.reshape(-1, 3).mean(0) - (230, 30, 30)).max() <= 3
    assert job.content_sha256 == hashlib.sha256(pixels.tobytes()).hexdigest()  # the cache key
