"""Real JPEGs of 100-300 KB in several sizes, each one unique after preprocessing.

Variants are made from the real photographs in ``../shared/data/photos``: a slightly different
crop of the photo (so the 224x224 prepared pixels, and hence the embedding cache key, differ),
resized to one of several camera-like sizes and re-encoded with a quality chosen to land the file
between 100 and 300 KB. Variant ``i`` is deterministic; files are cached in
``.cache/bench/corpus-v1/`` and made once, on both cores.
"""

from __future__ import annotations

import io
import os
import random
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path

from PIL import Image

from bench.common import CACHE, ROOT, log

# The six real photographs beside the checkout (../shared/data/photos), or PENGUIN12_PHOTOS.
PHOTOS = Path(os.environ.get("PENGUIN12_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
CORPUS_DIR = CACHE / "bench" / "corpus-v1"
MIN_BYTES, MAX_BYTES = 100_000, 300_000
# Landscape and portrait camera-like sizes (0.5 to 1.9 megapixels).
SIZES = ((800, 600), (1024, 768), (1280, 960), (1600, 1200), (768, 1024), (1200, 1200))


@cache
def _sources() -> list[Image.Image]:
    paths = sorted(PHOTOS.glob("*.jpg"))
    if not paths:
        raise SystemExit(
            f"no photographs (*.jpg) in {PHOTOS}; set PENGUIN12_PHOTOS to their folder"
        )
    return [Image.open(p).convert("RGB") for p in paths]


def make_variant(i: int) -> bytes:
    """Variant ``i``: a random 88-100% crop of photo ``i % 6``, resized and re-encoded."""
    rng = random.Random(i)
    sources = _sources()
    src = sources[i % len(sources)]
    width, height = SIZES[(i // len(sources)) % len(SIZES)]
    aspect = width / height
    sw, sh = src.size
    crop_w = min(sw, sh * aspect) * rng.uniform(0.88, 1.0)
    crop_h = crop_w / aspect
    x0 = rng.uniform(0, sw - crop_w)
    y0 = rng.uniform(0, sh - crop_h)
    base = src.resize(
        (width, height), Image.Resampling.BICUBIC, box=(x0, y0, x0 + crop_w, y0 + crop_h)
    )
    quality, scale = 88 + rng.randrange(5), 1.0
    data = b""
    for _ in range(12):
        image = base if scale == 1.0 else base.resize((round(width * scale), round(height * scale)))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        data = buf.getvalue()
        if len(data) < MIN_BYTES:
            if quality < 95:
                quality = min(95, quality + 3)
            else:
                scale *= 1.2
        elif len(data) > MAX_BYTES:
            if quality > 72:
                quality -= 6
            else:
                scale /= 1.2
        else:
            break
    return data


def _make_file(i: int) -> int:
    path = CORPUS_DIR / f"{i:05d}.jpg"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(make_variant(i))
    tmp.replace(path)
    return i


def ensure_corpus(n: int) -> list[Path]:
    """Paths of variants 0..n-1, making the missing ones (on all cores)."""
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    paths = [CORPUS_DIR / f"{i:05d}.jpg" for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        log(f"making {len(missing)} JPEG variants in {CORPUS_DIR} (once)")
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for _ in pool.map(_make_file, missing, chunksize=16):
                pass
    return paths


# Images a quick closed-loop run may send: each is sent at most once, and a window must never run
# out (5-10 s warm-up + 15 s at up to ~100 images/s here, with headroom). With 1000 (until issue
# #14's second pass) the users ran out near the end of every window, which capped what the
# saturated scenarios could measure at ~50 images/s.
QUICK_CORPUS = 2500


def load_corpus(n: int) -> list[bytes]:
    """The bytes of variants 0..n-1."""
    return [p.read_bytes() for p in ensure_corpus(n)]


def describe(corpus: list[bytes]) -> dict[str, object]:
    """Sizes of a corpus, for the result files."""
    sizes = sorted(len(b) for b in corpus)
    dims: dict[str, int] = {}
    for data in corpus[: min(len(corpus), 60)]:
        with Image.open(io.BytesIO(data)) as im:
            key = f"{im.size[0]}x{im.size[1]}"
        dims[key] = dims.get(key, 0) + 1
    return {
        "images": len(corpus),
        "kb_min": round(sizes[0] / 1000, 1),
        "kb_median": round(sizes[len(sizes) // 2] / 1000, 1),
        "kb_max": round(sizes[-1] / 1000, 1),
        "dimensions_seen_in_first_60": dims,
        "source": "re-encoded crops of ../shared/data/photos/*.jpg (unique prepared pixels)",
    }
