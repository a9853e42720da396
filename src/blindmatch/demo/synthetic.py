"""Benign synthetic pictures: the stand-ins for listed images in demos and tests.

Each picture is a smooth random landscape of colour fields and shapes made from
a seed, so it is reproducible, photo-like enough for PDQ (high quality scores,
distinct hashes) and contains nothing but abstract colour.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def synthetic_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A deterministic abstract RGB picture for ``seed``."""
    rng = np.random.default_rng(seed)
    w, h = size
    # Low-frequency colour field: random coarse grid, smoothly upsampled.
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    field = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1 = x0 + int(rng.integers(w // 10, w // 2))
        y1 = y0 + int(rng.integers(h // 10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    field = field.filter(ImageFilter.GaussianBlur(radius=max(1.0, w / 320)))
    noise = rng.normal(0, 6, size=(h, w, 3))
    pixels = np.clip(np.asarray(field, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")
