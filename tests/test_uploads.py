"""Upload validation: what a person sends, and what they are told when it is refused."""

from __future__ import annotations

import io
import json
import re
import select
import socket

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import Stack
from penguin12.imaging import CorruptImage, ImageTooLarge, UnsupportedImage, prepare_image


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


def test_transparency_is_composited_on_white() -> None:
    pixels = prepare(encode(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "PNG"))
    assert pixels.min() == 255


def test_sixteen_bit_range_is_kept() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (16, 1))
    pixels = prepare(encode(Image.fromarray(ramp), "PNG"))
    assert pixels[..., 0].min() < 10 and pixels[..., 0].max() > 245


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
        pixels = prepare_image(data, size=224, max_pixels=40_000_000).pixels
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
    # rounding): compositing on white, 16-bit stretching and box reduction commute.
    from penguin12.imaging import _reduced_rgb

    rng = np.random.default_rng(3)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(1000, 60000, (900, 1300), dtype=np.uint16))
        array = np.asarray(image, dtype=np.float64)
        low, high = array.min(), array.max()
        whole = Image.fromarray(((array - low) * (255.0 / (high - low))).astype(np.uint8))
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


# --- request bodies held to their limits as they stream in (issue #11, item 2) --------------


def _open_post(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    return sock


def _read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, object]]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize(
    ("path", "declared"), [("/v1/infer", 60 * 2**20), ("/v1/infer/batch", 200 * 2**20)]
)
def test_oversized_body_is_refused_from_its_content_length(
    stack: Stack, path: str, declared: int
) -> None:
    # Only the headers are sent: the answer must come without the server waiting for the body.
    sock = _open_post(
        stack.ports["preprocessor"],
        path,
        {"Content-Type": "multipart/form-data; boundary=xyz", "Content-Length": str(declared)},
    )
    with sock:
        status, body = _read_response(sock, timeout=20)
    assert status == 413, body
    assert f"{declared:,} bytes" in str(body["detail"]) and "Nothing was read" in str(
        body["detail"]
    )


def test_streamed_body_is_cut_off_at_the_limit(stack: Stack) -> None:
    # A chunked upload (no Content-Length) that never ends: the server must stop reading and
    # answer once the body passes the limit, not wait for the end and spool it all first.
    sock = _open_post(
        stack.ports["preprocessor"],
        "/v1/infer",
        {"Content-Type": "multipart/form-data; boundary=xyz", "Transfer-Encoding": "chunked"},
    )
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    sent = 0
    answer = None
    with sock:
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        megabyte = b"\xff" * 2**20
        while sent < 40 * 2**20 and answer is None:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(megabyte), megabyte))
                sent += len(megabyte)
            except OSError:
                pass
            readable, _, _ = select.select([sock], [], [], 0.05 if sent < 12 * 2**20 else 1)
            if readable:
                answer = _read_response(sock, timeout=10)
    assert answer is not None, f"no answer after {sent:,} bytes"
    status, body = answer
    assert status == 413, body
    assert "stopped reading" in str(body["detail"])
    assert sent < 20 * 2**20


def test_too_many_form_parts_are_refused(stack: Stack) -> None:
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    fields = {f"field{i}": "x" for i in range(200)}
    response = httpx.post(
        stack.url("preprocessor", "/v1/infer"),
        files={"file": ("a.png", png, "image/png")},
        data=fields,
        timeout=30,
    )
    assert response.status_code == 413, response.text
    assert "more than 8 parts" in response.json()["detail"]


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
