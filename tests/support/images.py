"""Image encoding and the service's preparation, for the tests that check uploads and decoding."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from penguin12.imaging import Preprocessing, prepare_image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def prepare(data: bytes) -> np.ndarray:
    return prepare_image(data, preprocessing=Preprocessing(), max_pixels=4_000_000).pixels
