"""The benchmark's image transforms: sizes, determinism, identities, chaining, and
two checks of real PDQ behaviour. Every picture here is synthetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.eval.transforms import TRANSFORMS, Transform, apply, chain, get
from blindmatch.hashing import pdq_distance, pdq_from_rgb

NAMES = list(TRANSFORMS)
SIZES = [(1, 1), (2, 3), (7, 5), (64, 64), (97, 41), (41, 97), (320, 240)]

# Transforms whose output depends on the seed; every other one must not.
RANDOMISED = {
    "crop5-edge", "crop10-edge", "crop20-edge", "pad10-solid", "pad20-solid",
    "rot2", "rot4", "rot10", "watermark", "caption", "noise", "screenshot",
    "crop5-edge+jpeg70", "resize0.5+caption", "rot4+jpeg70", "flip-h+crop10-edge",
}  # fmt: skip

REQUIRED = {
    "none": "none",
    "jpeg95": "jpeg", "jpeg70": "jpeg", "jpeg40": "jpeg",
    "resize0.5": "resize", "resize0.25": "resize",
    "crop5-edge": "crop", "crop5-centre": "crop", "crop10-edge": "crop",
    "crop10-centre": "crop", "crop20-edge": "crop", "crop20-centre": "crop",
    "pad10-solid": "pad", "pad20-solid": "pad", "pad10-blur": "pad", "pad20-blur": "pad",
    "rot2": "rotate", "rot4": "rotate", "rot10": "rotate", "rot90": "rotate",
    "rot180": "rotate", "flip-h": "flip", "watermark": "overlay", "caption": "overlay",
    "blur": "filter", "noise": "filter", "gamma0.7": "filter", "gamma1.4": "filter",
    "grey": "filter", "screenshot": "frame",
    "crop5-edge+jpeg70": "chain", "resize0.5+caption": "chain", "rot4+jpeg70": "chain",
    "pad20-blur+resize0.5": "chain", "flip-h+crop10-edge": "chain",
}  # fmt: skip


def picture(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Synthetic photo, or random pixels for sizes too small for it."""
    if min(size) >= 16:
        return synthetic_photo(seed, size)
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return picture((160, 120), seed=3)


# ---------------------------------------------------------------- registry


def test_registry_names_groups_and_order() -> None:
    assert {n: t.group for n, t in TRANSFORMS.items()} == REQUIRED
    assert list(TRANSFORMS) == list(REQUIRED)  # reports rely on a stable order
    for name, t in TRANSFORMS.items():
        assert isinstance(t, Transform) and t.name == name and t.description


# ---------------------------------------------------------------- every transform


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_rgb_and_sensible_size(name: str, size: tuple[int, int]) -> None:
    w, h = size
    out = apply(name, picture(size), seed=1)
    assert out.mode == "RGB"
    ow, oh = out.size
    assert 0.2 * w - 1 <= ow <= 2.5 * w + 2, out.size
    assert 0.2 * h - 1 <= oh <= 2.5 * h + 2, out.size


@pytest.mark.parametrize("name", ["watermark", "caption", "screenshot", "pad20-blur", "rot10"])
def test_large_and_extreme_aspect_inputs(name: str) -> None:
    for size in [(2400, 1800), (1200, 30), (30, 1200)]:
        image = Image.new("RGB", size, (90, 140, 200))
        assert apply(name, image, seed=0).mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_non_rgb_input_is_converted(mode: str, photo: Image.Image) -> None:
    out = apply("watermark", photo.convert(mode), seed=0)
    assert out.mode == "RGB" and out.size == photo.size


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_seed_dependence(name: str) -> None:
    image = picture((96, 72), seed=5)
    assert same(apply(name, image, seed=7), apply(name, image, seed=7))
    outs = {apply(name, image, seed=s).tobytes() for s in range(8)}
    if name in RANDOMISED:
        assert len(outs) >= 2, "seed does not change a randomised transform"
    else:
        assert len(outs) == 1, "seed changes a transform documented as deterministic"


@pytest.mark.parametrize("name", NAMES)
def test_input_untouched_and_output_differs(name: str, photo: Image.Image) -> None:
    before = photo.tobytes()
    out = apply(name, photo, seed=0)
    assert photo.tobytes() == before
    # "none" is the unedited picture, the yardstick's first row
    assert same(out, photo) if name == "none" else not same(out, photo)


def test_identities_where_nothing_should_change() -> None:
    grey = Image.fromarray(
        np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2), "RGB"
    )
    assert same(apply("grey", grey, 0), grey)
    extremes = Image.new("RGB", (8, 8), (0, 255, 0))
    for name in ("gamma0.7", "gamma1.4"):
        assert same(apply(name, extremes, 0), extremes)
    symmetric = Image.new("RGB", (10, 6), (10, 20, 30))
    for name in ("flip-h", "rot180"):
        assert same(apply(name, symmetric, 0), symmetric)


# ---------------------------------------------------------------- exact geometry


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("percent", [5, 10, 20])
def test_crop_sizes_and_content(percent: int, size: tuple[int, int]) -> None:
    w, h = size
    cw, ch = round(percent / 100 * w), round(percent / 100 * h)
    image = picture(size)
    centre = apply(f"crop{percent}-centre", image, seed=0)
    box = (cw // 2, ch // 2, cw // 2 + w - cw, ch // 2 + h - ch)
    assert same(centre, image.crop(box))

    corners = {
        (left, top): image.crop((left, top, left + w - cw, top + h - ch))
        for left in (0, cw)
        for top in (0, ch)
    }
    seen = set()
    for seed in range(16):
        edge = apply(f"crop{percent}-edge", image, seed)
        assert edge.size == (w - cw, h - ch)
        match = [k for k, v in corners.items() if same(edge, v)]
        assert match, "edge crop is not anchored in a corner"
        seen.update(match)
    if cw and ch:
        assert len(seen) == 4


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", ["pad10-solid", "pad20-solid", "pad10-blur", "pad20-blur"])
def test_pad_sizes_and_content(name: str, size: tuple[int, int]) -> None:
    w, h = size
    f = int(name[3:5]) / 100
    aw, ah = round(f * w), round(f * h)
    image = picture(size)
    for seed in range(4):
        out = apply(name, image, seed)
        assert out.size == (w + aw, h + ah)
        x, y = aw // 2, ah // 2
        assert same(out.crop((x, y, x + w, y + h)), image)
        if name.endswith("solid") and (aw or ah):
            pixels = np.asarray(out).reshape(-1, 3)
            mask = np.ones((h + ah, w + aw), bool)
            mask[y : y + h, x : x + w] = False
            border = pixels[mask.reshape(-1)]
            assert (border == border[0]).all(), "solid border is not one colour"


def test_pad_solid_colours_and_blur_border() -> None:
    image = picture((120, 90))
    colours = {apply("pad20-solid", image, s).getpixel((0, 0)) for s in range(24)}
    assert {(0, 0, 0), (255, 255, 255)} <= colours and len(colours) > 2
    blurred = np.asarray(apply("pad20-blur", image, 0))
    top = blurred[:9].reshape(-1, 3)
    assert len(np.unique(top, axis=0)) > 10  # the picture, not a flat colour


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scale", [0.5, 0.25])
def test_resize_sizes(scale: float, size: tuple[int, int]) -> None:
    w, h = size
    out = apply(f"resize{scale}", picture(size), 0)
    assert out.size == (max(1, round(scale * w)), max(1, round(scale * h)))


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (97, 41), (64, 64)])
@pytest.mark.parametrize("degrees", [2, 4, 10])
def test_small_rotation_crops_without_fill(degrees: int, size: tuple[int, int]) -> None:
    w, h = size
    a = math.radians(degrees)
    k = min(w / (w * math.cos(a) + h * math.sin(a)), h / (w * math.sin(a) + h * math.cos(a)))
    expected = (math.floor(k * w) - 2, math.floor(k * h) - 2)
    white = Image.new("RGB", size, (255, 255, 255))
    image = picture(size)
    outs = set()
    for seed in range(6):
        assert apply(f"rot{degrees}", white, seed).getextrema() == ((255, 255),) * 3
        out = apply(f"rot{degrees}", image, seed)
        assert out.size == expected
        outs.add(out.tobytes())
    assert len(outs) == 2  # clockwise or counter-clockwise


def test_small_rotation_matches_rotate_then_crop(photo: Image.Image) -> None:
    w, h = photo.size
    out = apply("rot10", photo, 0)
    cw, ch = out.size
    left, top = (w - cw) // 2, (h - ch) // 2
    candidates = [
        photo.rotate(a, resample=Image.Resampling.BICUBIC).crop((left, top, left + cw, top + ch))
        for a in (10, -10)
    ]
    assert any(same(out, c) for c in candidates)


def test_lossless_rotations_and_flip(photo: Image.Image) -> None:
    flipped = apply("flip-h", photo, 0)
    assert same(flipped, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert same(apply("flip-h", flipped, 1), photo)
    assert same(apply("rot180", apply("rot180", photo, 0), 0), photo)
    r90 = apply("rot90", photo, 0)
    assert r90.size == (photo.height, photo.width)
    assert same(r90, photo.transpose(Image.Transpose.ROTATE_90))  # counter-clockwise
    four = photo
    for _ in range(4):
        four = apply("rot90", four, 0)
    assert same(four, photo)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_caption_size_and_placement(size: tuple[int, int]) -> None:
    w, h = size
    total = round(0.15 * h)
    image = picture(size)
    tops = set()
    for seed in range(12):
        out = apply("caption", image, seed)
        assert out.size == (w, h + total)
        top = next(t for t in (0, total // 2, total) if same(out.crop((0, t, w, t + h)), image))
        tops.add(top)
        bars = np.concatenate([np.asarray(out)[:top], np.asarray(out)[top + h :]])
        if bars.size:
            assert (bars == 255).mean() > 0.5  # white bars
            if h >= 100:
                assert (bars < 100).any()  # with black text
    if total >= 2:
        assert tops == {0, total // 2, total}


def test_watermark_in_a_corner_about_a_tenth_of_the_area() -> None:
    w, h = 400, 300
    image = Image.new("RGB", (w, h), (128, 128, 128))
    corners = set()
    for seed in range(12):
        out = apply("watermark", image, seed)
        diff = np.abs(np.asarray(out, int) - np.asarray(image, int)).sum(axis=2)
        ys, xs = np.nonzero(diff)
        area = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
        assert 0.06 * w * h <= area <= 0.101 * w * h
        corners.add((xs.min() < w / 2, ys.min() < h / 2))
        assert xs.min() < w * 0.1 or xs.max() > w * 0.9
        assert ys.min() < h * 0.1 or ys.max() > h * 0.9
    assert len(corners) == 4


def test_screenshot_frame_size_and_placement(photo: Image.Image) -> None:
    w, h = photo.size
    margin = round(0.03 * w)
    fw = w + 2 * margin
    chrome = round(0.065 * fw) + round(0.13 * fw)
    out = apply("screenshot", photo, 0)
    assert out.size == (fw, chrome + 2 * margin + h + round(0.16 * fw))
    top = chrome + margin
    assert same(out.crop((margin, top, margin + w, top + h)), photo)


def test_noise_is_sigma_10_and_centred() -> None:
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    delta = np.asarray(apply("noise", image, 0), float) - 128
    assert abs(delta.mean()) < 0.1
    assert 9.8 < delta.std() < 10.2
    assert np.array_equal(delta, np.round(delta))


def test_gamma_curves() -> None:
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (1, 1)).reshape(1, 256), "L")
    ramp = ramp.convert("RGB")
    for g in (0.7, 1.4):
        got = np.asarray(apply(f"gamma{g}", ramp, 0))[0, :, 0]
        want = np.round(255 * (np.arange(256) / 255) ** g)
        assert np.array_equal(got, want)
    assert np.asarray(apply("gamma0.7", ramp, 0)).mean() > np.asarray(ramp).mean()


# ---------------------------------------------------------------- chains and lookup


def test_chain_composes_in_order_with_one_rng(photo: Image.Image) -> None:
    t = chain("crop5-edge", "jpeg70")
    assert (t.name, t.group) == ("crop5-edge+jpeg70", "chain")
    rng = np.random.default_rng(11)
    by_hand = TRANSFORMS["jpeg70"](TRANSFORMS["crop5-edge"](photo, rng), rng)
    assert same(t(photo, np.random.default_rng(11)), by_hand)
    assert same(apply("crop5-edge+jpeg70", photo, 11), by_hand)
    for name, registered in TRANSFORMS.items():
        if registered.group == "chain":
            assert same(
                apply(name, photo, 4), chain(*name.split("+"))(photo, np.random.default_rng(4))
            )
    # Ad-hoc chains by name, and chains of chains, flatten to '+'-joined names.
    assert same(apply("grey+flip-h", photo, 0), apply("flip-h", apply("grey", photo, 0), 0))
    assert chain("rot4+jpeg70", "grey").name == "rot4+jpeg70+grey"
    assert get("jpeg95") is TRANSFORMS["jpeg95"]


def test_unknown_names_are_rejected_clearly(photo: Image.Image) -> None:
    with pytest.raises(
        KeyError, match=r"unknown transform 'jpeg-99'.*known transforms: none, jpeg95"
    ):
        apply("jpeg-99", photo, 0)
    with pytest.raises(KeyError, match="unknown transform 'nope'"):
        chain("jpeg95", "nope")
    with pytest.raises(KeyError, match="unknown transform 'nope'"):
        apply("flip-h+nope", photo, 0)
    with pytest.raises(ValueError, match="at least one"):
        chain()


# ---------------------------------------------------------------- real PDQ behaviour


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pdq_survives_jpeg95_and_not_a_flip(seed: int) -> None:
    image = synthetic_photo(seed, (640, 480))
    reference = pdq_from_rgb(np.asarray(image)).hex

    def distance(name: str) -> int:
        return pdq_distance(reference, pdq_from_rgb(np.asarray(apply(name, image, seed))).hex)

    assert distance("jpeg95") <= 16
    assert distance("flip-h") > 64
