"""Image transforms for the perceptual-hash robustness benchmark.

The benchmark applies each transform to a listed image and checks whether the
PDQ hash of the result still matches. A transform is a pure function
``(image, rng) -> image``: RGB in, RGB out, deterministic for a given
``numpy.random.Generator``, no file I/O (JPEG re-encoding goes through
``io.BytesIO``). ``apply(name, image, seed)`` runs one by name with
``numpy.random.default_rng(seed)``.

Sizes are defined in pixels of the input (``W`` x ``H``) so that every
transform scales with the picture and works from 1x1 up to 4000x3000.
Rounding is Python's ``round`` (half to even) unless stated.

* **crop p%** removes ``round(p*W)`` columns and ``round(p*H)`` rows in total,
  so the output is exactly ``(W - round(p*W)) x (H - round(p*H))`` and keeps
  about ``(1-p)^2`` of the area. ``-edge`` takes all of it from one random
  horizontal side and one random vertical side (the result is anchored in a
  random corner); ``-centre`` splits it evenly (the odd pixel comes off the
  right / bottom).
* **pad p%** adds ``round(p*W)`` columns and ``round(p*H)`` rows in total,
  split evenly (the odd pixel goes to the right / bottom), so the image sits
  in the middle of a ``(W + round(p*W)) x (H + round(p*H))`` canvas.
* **small rotations** rotate by the angle with a random sign (bicubic,
  ``expand=False``) and then *crop*: to the largest centred rectangle with the
  input's aspect ratio that lies inside the rotated picture, less 1 px on every
  side as a safety margin. No fill colour is ever visible; the
  output is smaller than the input (about 0.82 of each side at 10 degrees for
  4:3). 90 and 180 are lossless transposes; ``rot90`` is counter-clockwise.

See ``TRANSFORMS`` (and each ``Transform.description``) for the full list.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

TransformFn = Callable[[Image.Image, np.random.Generator], Image.Image]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

_MIN_FONT = 5  # below this many pixels, text is not drawn at all (tiny images)


@dataclass(frozen=True)
class Transform:
    """A named image transform. ``name`` is a stable identifier used in reports."""

    name: str
    group: str
    fn: TransformFn
    description: str = ""

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        out = self.fn(_rgb(image), rng)
        return _rgb(out)


# ---------------------------------------------------------------- helpers


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


@lru_cache(maxsize=64)
def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _fitted_font(text: str, size: int, max_width: float) -> Font | None:
    """The default font at ``size`` px, shrunk so ``text`` fits in ``max_width``."""
    if size < _MIN_FONT or max_width < 1:
        return None
    font = _font(size)
    length = font.getlength(text)
    if length > max_width:
        size = int(size * max_width / length)
        if size < _MIN_FONT:
            return None
        font = _font(size)
    return font


def _luma(colour: tuple[int, int, int]) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in rng.integers(0, 256, size=3))
    return (r, g, b)


# ---------------------------------------------------------------- jpeg / resize


def _jpeg(quality: int) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
        buf.seek(0)
        with Image.open(buf) as decoded:
            return decoded.convert("RGB")

    return fn


def _resize(scale: float) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = image.size
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return image.resize(size, Image.Resampling.LANCZOS)

    return fn


# ---------------------------------------------------------------- crop / pad


def _crop(fraction: float, where: str) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = image.size
        cut_w, cut_h = round(fraction * w), round(fraction * h)
        if where == "edge":
            left = cut_w if rng.integers(2) else 0  # 1: cut the left side
            top = cut_h if rng.integers(2) else 0  # 1: cut the top
        else:
            left, top = cut_w // 2, cut_h // 2
        return image.crop((left, top, left + w - cut_w, top + h - cut_h))

    return fn


def _pad_box(image: Image.Image, fraction: float) -> tuple[tuple[int, int], tuple[int, int]]:
    w, h = image.size
    add_w, add_h = round(fraction * w), round(fraction * h)
    return (w + add_w, h + add_h), (add_w // 2, add_h // 2)


def _pad_solid(fraction: float) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        size, offset = _pad_box(image, fraction)
        kind = int(rng.integers(3))
        colour = ((0, 0, 0), (255, 255, 255))[kind] if kind < 2 else _random_colour(rng)
        canvas = Image.new("RGB", size, colour)
        canvas.paste(image, offset)
        return canvas

    return fn


def _pad_blur(fraction: float) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        size, offset = _pad_box(image, fraction)
        # The picture itself, stretched to the canvas and heavily blurred: done at
        # 1/8 scale for speed, then scaled up (bilinear keeps it smooth).
        small = (max(1, round(size[0] / 8)), max(1, round(size[1] / 8)))
        back = image.resize(small, Image.Resampling.BILINEAR)
        back = back.filter(ImageFilter.GaussianBlur(radius=0.04 * max(small)))
        canvas = back.resize(size, Image.Resampling.BILINEAR)
        canvas.paste(image, offset)
        return canvas

    return fn


# ---------------------------------------------------------------- rotate / flip


def _rotate_small(degrees: float) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        from blindmatch.hashing.hot import rotate_inscribed

        return rotate_inscribed(image, degrees if rng.integers(2) else -degrees)

    return fn


def _transpose(method: Image.Transpose) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return image.transpose(method)

    return fn


# ---------------------------------------------------------------- overlays

_WATERMARK_TEXT = "SAMPLE"
_CAPTIONS = (
    "WHEN THE SUN COMES OUT",
    "NOBODY: ME AT 3 AM",
    "THIS IS FINE",
    "MONDAY MORNING MOOD",
    "LOOK AT THIS VIEW",
    "ME EXPLAINING THE PLAN",
    "WEEKEND VIBES",
    "NEW WALLPAPER JUST DROPPED",
)


def _watermark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A semi-transparent 2:1 logo (rounded box, disc, text) in a random corner."""
    w, h = image.size
    margin = round(0.03 * min(w, h))
    lw = round(math.sqrt(0.2 * w * h))  # 2:1 box of 10% of the image area ...
    lw, lh = min(lw, w - 2 * margin), min(round(lw / 2), h - 2 * margin)  # ... if it fits
    lw, lh = max(1, lw), max(1, lh)
    corner = int(rng.integers(4))
    bg = _random_colour(rng)
    fg = (0, 0, 0) if _luma(bg) >= 128 else (255, 255, 255)
    x = margin if corner in (0, 2) else w - margin - lw
    y = margin if corner in (0, 1) else h - margin - lh

    logo = Image.new("RGBA", (lw, lh), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    draw.rounded_rectangle((0, 0, lw - 1, lh - 1), radius=lh // 4, fill=(*bg, 110))
    pad, disc = round(0.2 * lh), round(0.6 * lh)
    if disc >= 2:
        top = (lh - disc) // 2
        draw.ellipse((pad, top, pad + disc, top + disc), fill=(*fg, 170))
    text_x = 2 * pad + disc
    font = _fitted_font(_WATERMARK_TEXT, round(0.45 * lh), lw - text_x - pad)
    if font is not None:
        draw.text((text_x, lh / 2), _WATERMARK_TEXT, font=font, fill=(*fg, 190), anchor="lm")

    box = (x, y, x + lw, y + lh)
    region = Image.alpha_composite(image.crop(box).convert("RGBA"), logo)
    out = image.copy()
    out.paste(region.convert("RGB"), box[:2])
    return out


def _caption_bar(width: int, height: int, text: str) -> Image.Image:
    bar = Image.new("RGB", (width, height), (255, 255, 255))
    font = _fitted_font(text, round(0.6 * height), 0.94 * width)
    if font is not None:
        ImageDraw.Draw(bar).text(
            (width / 2, height / 2), text, font=font, fill=(0, 0, 0), anchor="mm"
        )
    return bar


def _caption(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Meme-style white bar(s) with black text; round(0.15*H) rows added in total."""
    w, h = image.size
    total = round(0.15 * h)
    where = int(rng.integers(3))  # 0: top, 1: bottom, 2: both (split evenly)
    texts = [_CAPTIONS[int(i)] for i in rng.integers(len(_CAPTIONS), size=2)]
    top = total if where == 0 else (total // 2 if where == 2 else 0)
    bottom = total - top
    canvas = Image.new("RGB", (w, h + total), (255, 255, 255))
    if top:
        canvas.paste(_caption_bar(w, top, texts[0]), (0, 0))
    canvas.paste(image, (0, top))
    if bottom:
        canvas.paste(_caption_bar(w, bottom, texts[1]), (0, top + h))
    return canvas


# ---------------------------------------------------------------- filters


def _blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    radius = 2.0 * max(image.size) / 512
    return image.filter(ImageFilter.GaussianBlur(radius=radius))


@lru_cache(maxsize=4)
def _noise_table(sigma: float) -> np.ndarray:
    """Integer Gaussian noise by inverse CDF: entry i is round(sigma * z) for the
    normal quantile z at (i + 0.5) / 65536."""
    top = math.ceil(5 * sigma)
    values = np.arange(-top, top + 1, dtype=np.int16)
    # P(round(sigma * Z) <= k) for every candidate k
    upper = np.array([0.5 * (1 + math.erf((k + 0.5) / (sigma * math.sqrt(2)))) for k in values])
    u = (np.arange(65536) + 0.5) / 65536
    index = np.minimum(np.searchsorted(upper, u, side="left"), len(values) - 1)
    table: np.ndarray = values[index]
    return table


def _noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # Adding N(0, 10^2) and rounding equals adding the rounded noise to the integer
    # pixels, so the noise is drawn as integers from a 16-bit inverse-CDF table
    # (4x faster than float normals; tails cut at about 4.2 sigma).
    pixels = np.asarray(image, dtype=np.int16)
    draws = rng.integers(0, 65536, size=pixels.shape, dtype=np.uint16)
    pixels = pixels + _noise_table(10.0)[draws]
    np.clip(pixels, 0, 255, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _gamma(gamma: float) -> TransformFn:
    table = [round(255 * (i / 255) ** gamma) for i in range(256)] * 3

    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return image.point(table)

    return fn


def _grey(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.convert("L").convert("RGB")


# ---------------------------------------------------------------- screenshot

_APP_TITLES = ("Photos", "Messages", "Gallery", "Chat", "Shared album")


def _screenshot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The picture inside a phone-app frame: status bar, toolbar, margins, input bar."""
    w, h = image.size
    margin = round(0.03 * w)
    fw = w + 2 * margin
    status, toolbar, bottom = round(0.065 * fw), round(0.13 * fw), round(0.16 * fw)
    fh = status + toolbar + margin + h + margin + bottom

    dark = bool(rng.integers(2))
    bg, ink = ((18, 18, 18), (235, 235, 235)) if dark else ((250, 250, 250), (20, 20, 20))
    field = (44, 44, 46) if dark else (232, 232, 236)
    accent = _random_colour(rng)
    clock = f"{int(rng.integers(24))}:{int(rng.integers(60)):02d}"
    title = _APP_TITLES[int(rng.integers(len(_APP_TITLES)))]

    canvas = Image.new("RGB", (fw, fh), bg)
    draw = ImageDraw.Draw(canvas)
    unit = fw / 100  # UI sizes in hundredths of the screen width

    # Status bar: clock on the left, signal bars and battery on the right.
    font = _fitted_font(clock, round(0.55 * status), 20 * unit)
    if font is not None:
        draw.text((4 * unit, status / 2), clock, font=font, fill=ink, anchor="lm")
    if status >= 8:
        y0, y1 = 0.3 * status, 0.7 * status
        draw.rectangle((86 * unit, y0, 95 * unit, y1), outline=ink, width=max(1, round(unit / 4)))
        draw.rectangle((87 * unit, y0 + 0.1 * status, 92 * unit, y1 - 0.1 * status), fill=ink)
        for i in range(4):
            bx = 74 * unit + i * 2.5 * unit
            draw.rectangle((bx, y1 - (i + 1) * (y1 - y0) / 4, bx + 1.5 * unit, y1), fill=ink)

    # Toolbar: back chevron, title, divider.
    ty = status + toolbar / 2
    if toolbar >= 4:
        c = 0.18 * toolbar
        line = max(1, round(unit / 2))
        draw.line((7 * unit, ty - c, 4 * unit, ty, 7 * unit, ty + c), fill=ink, width=line)
        draw.line((0, status + toolbar - 1, fw, status + toolbar - 1), fill=field, width=line)
    font = _fitted_font(title, round(0.35 * toolbar), 70 * unit)
    if font is not None:
        draw.text((12 * unit, ty), title, font=font, fill=ink, anchor="lm")

    canvas.paste(image, (margin, status + toolbar + margin))

    # Bottom bar: rounded message field and a round send button.
    by0 = fh - bottom
    if bottom >= 6:
        fy0, fy1 = by0 + 0.22 * bottom, by0 + 0.78 * bottom
        radius = round((fy1 - fy0) / 2)
        draw.rounded_rectangle((4 * unit, fy0, 80 * unit, fy1), radius=radius, fill=field)
        draw.ellipse((84 * unit, fy0, 84 * unit + (fy1 - fy0), fy1), fill=accent)
        font = _fitted_font("Message", round(0.4 * (fy1 - fy0)), 60 * unit)
        if font is not None:
            draw.text(
                (8 * unit, (fy0 + fy1) / 2), "Message", font=font, fill=(142, 142, 147), anchor="lm"
            )
    return canvas


# ---------------------------------------------------------------- registry


def _chain_fn(parts: tuple[Transform, ...]) -> TransformFn:
    def fn(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        for part in parts:
            image = part(image, rng)
        return image

    return fn


def _build() -> dict[str, Transform]:
    out: dict[str, Transform] = {}

    def add(name: str, group: str, fn: TransformFn, description: str) -> None:
        out[name] = Transform(name, group, fn, description)

    add("none", "none", lambda image, rng: image, "the picture as listed, unedited")
    for q in (95, 70, 40):
        add(f"jpeg{q}", "jpeg", _jpeg(q), f"JPEG re-encode, Pillow quality {q}, 4:2:0 chroma")
    for s in (0.5, 0.25):
        add(
            f"resize{s}",
            "resize",
            _resize(s),
            f"Lanczos resize to max(1, round({s}*W)) x max(1, round({s}*H))",
        )
    for p in (5, 10, 20):
        f = p / 100
        add(
            f"crop{p}-edge",
            "crop",
            _crop(f, "edge"),
            f"remove round({f}*W) cols and round({f}*H) rows, all from one random "
            "left/right side and one random top/bottom side (random corner kept)",
        )
        add(
            f"crop{p}-centre",
            "crop",
            _crop(f, "centre"),
            f"remove round({f}*W) cols and round({f}*H) rows split evenly "
            "(odd pixel off right/bottom); the middle is kept",
        )
    for p in (10, 20):
        f = p / 100
        add(
            f"pad{p}-solid",
            "pad",
            _pad_solid(f),
            f"centre on a (W+round({f}*W)) x (H+round({f}*H)) canvas of one colour: "
            "black, white or uniform random RGB, 1/3 each",
        )
    for p in (10, 20):
        f = p / 100
        add(
            f"pad{p}-blur",
            "pad",
            _pad_blur(f),
            f"centre on a (W+round({f}*W)) x (H+round({f}*H)) canvas showing the image "
            "itself stretched to the canvas and Gaussian-blurred (radius ~4% of the long "
            "side)",
        )
    for d in (2, 4, 10):
        add(
            f"rot{d}",
            "rotate",
            _rotate_small(d),
            f"rotate +/-{d} deg (random sign, bicubic, expand=False), crop to the largest "
            "centred rectangle of the input's aspect inside the rotated picture, less 1 px "
            "per side",
        )
    add(
        "rot90",
        "rotate",
        _transpose(Image.Transpose.ROTATE_90),
        "rotate 90 deg counter-clockwise (lossless)",
    )
    add("rot180", "rotate", _transpose(Image.Transpose.ROTATE_180), "rotate 180 deg (lossless)")
    add(
        "flip-h",
        "flip",
        _transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "mirror left-right (lossless)",
    )
    add(
        "watermark",
        "overlay",
        _watermark,
        "semi-transparent 2:1 logo (rounded box ~43% opaque, disc, 'SAMPLE') covering 10% "
        "of the area (clamped to fit) in a random corner, margin 3% of the short side",
    )
    add(
        "caption",
        "overlay",
        _caption,
        "meme caption: round(0.15*H) rows of white bar with black default-font text added "
        "on top, bottom or split between both (random); output W x (H+round(0.15*H))",
    )
    add("blur", "filter", _blur, "Gaussian blur, sigma (Pillow radius) 2*max(W,H)/512")
    add(
        "noise",
        "filter",
        _noise,
        "add i.i.d. Gaussian noise, sigma 10 (of 255), per pixel and channel; round, clip",
    )
    for g in (0.7, 1.4):
        add(f"gamma{g}", "filter", _gamma(g), f"gamma curve out = 255*(in/255)**{g}")
    add("grey", "filter", _grey, "greyscale via Pillow 'L' (ITU-R 601 luma), back to RGB")
    add(
        "screenshot",
        "frame",
        _screenshot,
        "phone-app frame (light/dark): margins round(0.03*W), status bar, toolbar and "
        "input bar of 6.5%, 13% and 16% of the frame width",
    )
    for names in (
        ("crop5-edge", "jpeg70"),
        ("resize0.5", "caption"),
        ("rot4", "jpeg70"),
        ("pad20-blur", "resize0.5"),
        ("flip-h", "crop10-edge"),
    ):
        parts = tuple(out[n] for n in names)
        add("+".join(names), "chain", _chain_fn(parts), " then ".join(names))
    return out


TRANSFORMS: dict[str, Transform] = _build()


def get(name: str) -> Transform:
    """The transform called ``name``; a '+'-joined name not in ``TRANSFORMS`` is
    built as a chain of its parts."""
    found = TRANSFORMS.get(name)
    if found is not None:
        return found
    if "+" in name:
        return chain(*name.split("+"))
    raise KeyError(f"unknown transform {name!r}; known transforms: {', '.join(TRANSFORMS)}")


def chain(*names: str) -> Transform:
    """The transforms ``names`` applied in order, sharing one rng. Named 'a+b+...'."""
    if not names:
        raise ValueError("chain() needs at least one transform name")
    parts = tuple(get(n) for n in names)
    name = "+".join(p.name for p in parts)
    description = " then ".join(p.name for p in parts)
    return Transform(name, "chain", _chain_fn(parts), description)


def apply(name: str, image: Image.Image, seed: int) -> Image.Image:
    """Apply transform ``name`` to ``image`` with ``numpy.random.default_rng(seed)``."""
    return get(name)(image, np.random.default_rng(seed))


__all__ = ["TRANSFORMS", "Transform", "apply", "chain", "get"]
