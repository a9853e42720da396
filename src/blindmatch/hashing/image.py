"""Decode an image safely and compute its PDQ hash.

Decoding honours EXIF orientation, converts every Pillow mode to RGB the way a
person would see it (CMYK, palette and alpha images included), and refuses
decompression bombs before any pixel is decoded. Large JPEGs are decoded at a
reduced DCT scale: ``draft`` keeps both sides at least ``JPEG_DRAFT_MIN_SIDE``
pixels. Measured on the PDQ reference images and on 48 synthetic photos from
1024x768 to 4032x3024, this stays within 8 bits of the full-size hash (the
conformance rule allows 10 for quality >= 80); a 256-pixel floor reached 10-12.

Other formats cannot decode at a reduced size, so the decoded image is box-reduced by
an integer factor at once, keeping both sides at least ``REDUCE_MIN_SIDE`` pixels:
everything after the decode (EXIF rotation, RGB conversion, PDQ and its variants,
keypoints) then works on the small copy. Measured on 58 images (36 synthetic photos
2048x1536 to 4032x3024, PDQ reference photos >= 768 px): within 4 bits of the full-size
hash at a 768 floor (512: 10, 384: 12). An 8000x8000 PNG hashed with variants went from
1.70 GB peak RSS and 11.3 s to 0.30 GB and 1.0 s. The decode itself still needs the
full-size buffer, 4 bytes a pixel (256 MB at 64 MP), which the service's decode budget
bounds.

Any failure of a decoder on the bytes it was given (Pillow's ``OSError``, ``ValueError``,
``RuntimeError`` from libavif/libheif...) is a ``DecodeError``: a corrupt upload is the
uploader's problem, never an internal error.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pdqhash
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from blindmatch.errors import (
    BadDimensions,
    DecodeError,
    InputError,
    TooManyPixels,
    TruncatedFile,
)

try:  # HEIC/HEIF/AVIF support is optional at import time, required by the package.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - the dependency is declared
    pass

# Never decode a truncated image silently: that would hash a grey half-image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

JPEG_DRAFT_MIN_SIDE = 384
REDUCE_MIN_SIDE = 768
DEFAULT_MAX_PIXELS = 64_000_000  # 64 megapixels: larger than any phone photo
MAX_ASPECT_RATIO = 100.0
MIN_QUALITY = 50  # PDQ below this is not trusted to match (python-threatexchange, HMA)


@dataclass(frozen=True, slots=True)
class PDQ:
    """A PDQ hash: 64 lowercase hex digits, and its quality (0-100)."""

    hex: str
    quality: int


def _twos(n: int) -> int:
    """How many times 2 divides n."""
    return (n & -n).bit_length() - 1 if n else 0


def hashed_transposed(shape: tuple[int, ...]) -> bool:
    """Whether an image of this ``(h, w, ...)`` shape is hashed through its transpose
    (see :func:`_pdq_compute`): then its PDQ values are exactly the transposed values of
    the transposed image, which callers hashing both (the dihedral variants) reuse."""
    h, w = shape[:2]
    return _twos(w) >= 7 and _twos(h) < _twos(w)


def _pdq_compute(pixels: np.ndarray, fn: Any) -> tuple[np.ndarray, int]:
    """``fn`` (pdqhash.compute or compute_float) on ``pixels``, returned as a
    16x16 matrix in the untransposed image's bit order, and the quality.

    The reference code runs 1.3-2.2x slower when the image width is a multiple
    of 128 (cache-set aliasing in its column filter; measured: 12 ms/MP at most
    widths, 21.6 at 512, 27 at 1024). PDQ commutes with transposition — the hash
    of the transposed image is the transposed 16x16 bit matrix, bit for bit — so
    such images are hashed transposed when that gives the friendlier width.
    """
    transpose = hashed_transposed(pixels.shape)
    if transpose:
        pixels = pixels.transpose(1, 0, 2)
    values, quality = fn(np.ascontiguousarray(pixels, dtype=np.uint8))
    matrix = np.asarray(values).reshape(16, 16)
    return (matrix.T if transpose else matrix), int(quality)


def pdq_from_rgb(pixels: np.ndarray) -> PDQ:
    """PDQ of an ``(h, w, 3)`` uint8 RGB array, via Meta's reference implementation."""
    matrix, quality = _pdq_compute(pixels, pdqhash.compute)
    return PDQ(np.packbits(matrix.astype(np.uint8)).tobytes().hex(), quality)


def pdq_with_vector_from_rgb(pixels: np.ndarray) -> tuple[PDQ, np.ndarray]:
    """The PDQ and the DCT values it thresholds, from one computation."""
    vec, quality = pdq_vector_from_rgb(pixels)
    bits = (vec > np.median(vec)).astype(np.uint8)
    return PDQ(np.packbits(bits).tobytes().hex(), quality), vec


def pdq_with_vector_transposed(vec: np.ndarray, quality: int) -> tuple[PDQ, np.ndarray]:
    """The PDQ and DCT values of the transposed image, from the image's own values
    (``pdq_vector_from_rgb``) — equal to hashing the transposed image whenever that one
    is hashed through its transpose (``hashed_transposed``)."""
    t = np.asarray(vec, dtype=np.float32).reshape(16, 16).T.reshape(-1)
    bits = (t > np.median(t)).astype(np.uint8)
    return PDQ(np.packbits(bits).tobytes().hex(), quality), t


def pdq_vector_from_rgb(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """PDQ's 256 DCT values before thresholding (float32, in bit order; a bit
    is 1 where its value exceeds the median), and the quality. How far a value
    lies from the median says how easily an edit flips that bit."""
    matrix, quality = _pdq_compute(pixels, pdqhash.compute_float)
    return matrix.astype(np.float32).reshape(-1), quality


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hex strings."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def open_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft: bool = True
) -> Image.Image:
    """Decode ``data`` into an upright RGB image, or raise an ``InputError``.

    ``max_pixels`` bounds the declared size before decoding; ``draft`` lets JPEGs
    decode at a reduced DCT scale (see the module docstring).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
            _check_size(im.size, max_pixels)
            if im.format == "GIF" or getattr(im, "is_animated", False):
                im.seek(0)
            jpeg = isinstance(im, JpegImagePlugin.JpegImageFile)
            if draft and jpeg:
                im.draft("RGB", (JPEG_DRAFT_MIN_SIDE, JPEG_DRAFT_MIN_SIDE))
            im.load()
            if draft and not jpeg and min(im.size) >= 2 * REDUCE_MIN_SIDE:
                return _to_rgb(_reduced_upright(im, min(im.size) // REDUCE_MIN_SIDE))
            im = _upright(im)
            return _to_rgb(im)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooManyPixels(f"image exceeds the pixel limit: {e}") from None
    except UnidentifiedImageError:
        # The caller sniffed an image signature, so this is a corrupt image.
        raise DecodeError("image is corrupt: no decoder accepts its header") from None
    except OSError as e:
        text = str(e)
        low = text.lower()
        if "truncated" in low or "premature end" in low or "broken data" in low:
            raise TruncatedFile(f"image data is truncated: {text}") from None
        raise DecodeError(f"image could not be decoded: {text}") from None
    except (ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError) as e:
        # Pillow raises these from malformed headers and chunk tables.
        raise DecodeError(f"image could not be decoded: {type(e).__name__}: {e}") from None
    except MemoryError:
        raise TooManyPixels("image is too large to decode in memory") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure (libavif's RuntimeError...)
        raise DecodeError(f"image could not be decoded: {type(e).__name__}: {e}") from None


def decode_cost(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> int | None:
    """What decoding ``data`` costs in memory, read from its header without decoding a
    pixel: in pixels, doubled for modes whose conversion to RGB takes a second full-size
    buffer (transparency, palette, CMYK, 16-bit: up to 8-10 bytes a pixel, against 4 for
    RGB, greyscale and JPEG at its draft size, whose declared size is an upper bound).
    ``None`` when decoding would fail before any pixel: no decoder recognises the
    header, or the image is over ``max_pixels``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                pixels = int(im.size[0]) * int(im.size[1])
                single = im.mode in ("RGB", "L", "1", "YCbCr")
                return None if pixels > max_pixels else pixels * (1 if single else 2)
    except Exception:  # noqa: BLE001 - whatever the header, open_image reports it
        return None


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _reduced_upright(im: Image.Image, factor: int) -> Image.Image:
    """``im`` box-reduced by ``factor``, then turned upright by its EXIF orientation
    (read first: the reduced copy carries no EXIF). No full-size copy is made for RGB
    and L images; transparent ones are averaged premultiplied (one RGBa copy, 4 bytes a
    pixel); other modes (CMYK, 16-bit) are converted to RGB first, as ``_to_rgb`` would."""
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - corrupt EXIF must not lose the image
        orientation = 1
    if im.mode == "P" and "transparency" not in im.info:
        im = im.convert("RGB")
    elif im.mode in ("P", "PA", "LA", "La", "RGBA"):
        # Premultiplied: box-averaging then compositing on white (``_to_rgb``) equals
        # compositing then averaging, without the full-size composite's copies.
        im = (im if im.mode == "RGBA" else im.convert("RGBA")).convert("RGBa")
    elif im.mode not in ("RGB", "L", "RGBa"):
        im = _to_rgb(im)
    small = im.reduce(factor)
    if small.mode == "RGBa":
        small = small.convert("RGBA")
    method = _TRANSPOSE.get(orientation)
    return small.transpose(method) if method is not None else small


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise BadDimensions(f"image has impossible dimensions {w}x{h}")
    if w * h > max_pixels:
        raise TooManyPixels(f"image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise BadDimensions(f"image aspect ratio {w}x{h} is beyond {MAX_ASPECT_RATIO:g}:1")


def _upright(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - corrupt EXIF must not lose the image
        return im


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        # Composite on white, as viewers show transparency on a light page.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_rgb(im)
    return im.convert("RGB")


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit greyscale to 8 bits by its own range, not by clipping."""
    a = np.asarray(im, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi > 255.0 or lo < 0.0:
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    grey = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def pdq_from_image_bytes(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft: bool = True
) -> PDQ:
    """PDQ of an encoded image (JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC...)."""
    return pdq_from_rgb(np.asarray(open_image(data, max_pixels=max_pixels, draft=draft)))
