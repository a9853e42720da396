"""Local features for edits that move every PDQ bit: crops and small rotations.

PDQ describes the whole frame, so a 4% crop or a 4-degree rotation moves it
about 50 bits. ORB keypoints (OpenCV) describe small patches, and a geometric
check (RANSAC, similarity transform) on their correspondences finds the listed
picture inside the edited one. Correspondences alone also link different
photographs of one scene (two shots of a star cluster share every star), so a
candidate is confirmed the PDQ way: the query is warped into the listed
image's frame and the PDQs of a few windows (the centre and four halves) are
compared with the ones the list stores. The score is the smallest of those
PDQ distances, in bits, like every other match.

What a list stores per image (:class:`ListedFeatures`): up to
``MAX_KEYPOINTS`` points and 32-byte descriptors, the picture's shape, and the
window PDQs. Serialised with a magic and a version (:meth:`ListedFeatures.to_bytes`).

Pure: arrays in, arrays out; no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from blindmatch.errors import IndexFormatError
from blindmatch.hashing.image import PDQ, pdq_from_rgb

WORK_SIDE = 512  # features are computed on a copy that fits this many pixels
MAX_KEYPOINTS = 500
FAST_THRESHOLD = 10  # OpenCV's default (20) finds too few corners in dark skies
UPSCALE = True
MIN_SIDE = 64  # below this ORB's 31-pixel border leaves nothing to describe
# The verified windows, as (left, top, right, bottom) fractions of the listed
# picture: the centre (survives crops from any edge) and four halves (one of
# them misses a logo or a caption in any corner or along any edge). A
# candidate's distance is the smallest over the windows.
WINDOWS = (
    (0.2, 0.2, 0.8, 0.8),
    (0.05, 0.05, 0.5, 0.95),
    (0.5, 0.05, 0.95, 0.95),
    (0.05, 0.05, 0.95, 0.5),
    (0.05, 0.5, 0.95, 0.95),
)
WINDOW_SIDE = 64  # pixels along a window's longer side when resampled (PDQ works at 64x64)
BLUR_PER_STEP = 0.5  # Gaussian sigma, in source pixels per window pixel, before resampling
# A query that shows the listed picture at fewer than LOW_RES_BELOW pixels along its
# longer side (a thumbnail, a quarter-size copy of a small picture) has lost the detail
# the windows keep; such queries are compared, at LOW_RES_SIDE, with a second set of
# window PDQs the list computes from a LOW_RES_SIDE copy of the picture.
LOW_RES_SIDE = 64
LOW_RES_BELOW = 128

_MAGIC = b"BMKP"
_VERSION = 2  # version 1: no low-resolution windows (still read)
_HEADER = struct.Struct(">4sBHeeB")  # magic, version, n, width, height, windows

cv2.setNumThreads(1)  # parallelism comes from processes; threads would oversubscribe


@dataclass(frozen=True, eq=False)
class Keypoints:
    """ORB keypoints of one picture. ``points`` are ``(n, 2)`` float32 in units
    of the picture's longer side (so the picture spans ``[0, width] x [0,
    height]`` with ``max(width, height) == 1``); ``descriptors`` are ``(n, 32)``
    uint8 (256-bit rBRIEF)."""

    points: np.ndarray
    descriptors: np.ndarray
    width: float
    height: float

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True, eq=False)
class ListedFeatures:
    """What a list stores for one image: its keypoints and the PDQ of each of
    ``WINDOWS``."""

    keypoints: Keypoints
    window_pdqs: tuple[bytes, ...]  # 32 bytes each, in ``WINDOWS`` order
    low_res_pdqs: tuple[bytes, ...] = ()  # the same windows of a LOW_RES_SIDE copy

    def to_bytes(self) -> bytes:
        kp = self.keypoints
        if len(self.low_res_pdqs) != len(self.window_pdqs):
            raise ValueError("a version 2 keypoint record needs both window sets")
        head = _HEADER.pack(_MAGIC, _VERSION, len(kp), kp.width, kp.height, len(self.window_pdqs))
        pts = np.ascontiguousarray(kp.points, dtype=">f2").tobytes()
        desc = np.ascontiguousarray(kp.descriptors, dtype=np.uint8).tobytes()
        return head + b"".join(self.window_pdqs + self.low_res_pdqs) + pts + desc

    @classmethod
    def from_bytes(cls, data: bytes) -> ListedFeatures:
        if len(data) < _HEADER.size:
            raise IndexFormatError("keypoint record truncated")
        magic, version, n, width, height, k = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise IndexFormatError("not a keypoint record")
        if version not in (1, _VERSION):
            raise IndexFormatError(f"keypoint record version {version} is not supported")
        sets = 1 if version == 1 else 2
        if len(data) != _HEADER.size + 32 * k * sets + n * 4 + n * 32:
            raise IndexFormatError("keypoint record has the wrong length")
        if k != len(WINDOWS):
            raise IndexFormatError(f"keypoint record has {k} windows, expected {len(WINDOWS)}")
        if not (0 < width <= 1 and 0 < height <= 1):
            raise IndexFormatError("keypoint record has a bad shape")
        off = _HEADER.size
        pdqs = tuple(bytes(data[off + 32 * i : off + 32 * (i + 1)]) for i in range(k * sets))
        off += 32 * k * sets
        pts = np.frombuffer(data, dtype=">f2", count=2 * n, offset=off).astype(np.float32)
        desc = np.frombuffer(data, dtype=np.uint8, count=32 * n, offset=off + 4 * n)
        kp = Keypoints(pts.reshape(n, 2), desc.reshape(n, 32).copy(), float(width), float(height))
        return cls(kp, pdqs[:k], pdqs[k:])


def work_copy(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` scaled down (area-averaged) to fit ``WORK_SIDE``; never scaled up."""
    return low_res_copy(rgb, WORK_SIDE)


def mirrored_keypoints(small: np.ndarray) -> tuple[Keypoints, Keypoints]:
    """The keypoints of a work copy (:func:`work_copy`) and of its mirror image: what a
    query looks up (the small copy is mirrored, never the full-size picture)."""
    return keypoints_from_rgb(small), keypoints_from_rgb(small[:, ::-1])


def keypoints_from_rgb(rgb: np.ndarray, *, max_keypoints: int = MAX_KEYPOINTS) -> Keypoints:
    """ORB keypoints of an ``(h, w, 3)`` uint8 RGB picture (computed on a copy
    that fits ``WORK_SIDE``)."""
    work = work_copy(rgb)
    h, w = work.shape[:2]
    side = float(max(h, w))
    width, height = w / side, h / side
    if min(h, w) < MIN_SIDE:
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), width, height)
    grey = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    if UPSCALE and max(h, w) < WORK_SIDE:
        up = WORK_SIDE / max(h, w)
        size = (max(1, round(w * up)), max(1, round(h * up)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR)
        side = float(max(size))
    orb = cv2.ORB_create(nfeatures=max_keypoints, fastThreshold=FAST_THRESHOLD)  # type: ignore[attr-defined]
    found, desc = orb.detectAndCompute(grey, None)
    if desc is None or not found:
        pts = np.zeros((0, 2), np.float32)
        desc = np.zeros((0, 32), np.uint8)
    else:
        pts = np.array([k.pt for k in found], dtype=np.float32) / side
    return Keypoints(pts, np.asarray(desc, dtype=np.uint8), width, height)


def window_pdqs(
    rgb: np.ndarray, transform: np.ndarray | None, width: float, height: float
) -> list[PDQ]:
    """PDQ of each of the listed picture's ``WINDOWS``, sampled from ``rgb``.

    ``transform`` is the 2x3 similarity mapping ``rgb``'s normalised
    coordinates to those of a listed picture of shape ``width`` x ``height``
    (None: ``rgb`` is that picture). Each window is resampled to
    ``WINDOW_SIDE`` pixels after a Gaussian blur matched to the sampling step,
    so both sides keep the same band of detail whatever their resolution (a
    quarter-size copy against its full-size original: median 16 bits apart
    with plain resampling at 256 px, 12 with this)."""
    work = work_copy(rgb)
    h, w = work.shape[:2]
    side = float(max(h, w))
    m = np.eye(3) if transform is None else np.vstack([transform, [0.0, 0.0, 1.0]])
    # listed normalised -> query pixels
    to_pixels = np.diag([side, side, 1.0]) @ np.linalg.inv(m)
    blurred: dict[float, np.ndarray] = {}
    out = []
    for left, top, right, bottom in WINDOWS:
        x0, y0 = left * width, top * height
        span_x, span_y = (right - left) * width, (bottom - top) * height
        step = max(span_x, span_y) / WINDOW_SIDE
        out_w, out_h = max(8, round(span_x / step)), max(8, round(span_y / step))
        # output pixel (u, v) -> listed point (x0 + u*step, y0 + v*step) -> query pixel
        to_listed = np.array([[step, 0.0, x0], [0.0, step, y0], [0.0, 0.0, 1.0]])
        affine = (to_pixels @ to_listed)[:2]
        sigma = round(BLUR_PER_STEP * float(np.sqrt(abs(np.linalg.det(affine[:, :2])))), 2)
        if sigma not in blurred:
            blurred[sigma] = cv2.GaussianBlur(work, (0, 0), sigma) if sigma > 0.3 else work
        warped = cv2.warpAffine(
            blurred[sigma],
            affine,
            (out_w, out_h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        out.append(pdq_from_rgb(warped))
    return out


def listed_features(rgb: np.ndarray, *, max_keypoints: int = MAX_KEYPOINTS) -> ListedFeatures:
    """What ``lists add`` stores for a listed picture beside its PDQ."""
    kp = keypoints_from_rgb(rgb, max_keypoints=max_keypoints)
    windows = window_pdqs(rgb, None, kp.width, kp.height)
    low = window_pdqs(low_res_copy(rgb), None, kp.width, kp.height)
    return ListedFeatures(
        kp, tuple(bytes.fromhex(p.hex) for p in windows), tuple(bytes.fromhex(p.hex) for p in low)
    )


def low_res_copy(rgb: np.ndarray, side: float = LOW_RES_SIDE) -> np.ndarray:
    """``rgb`` area-averaged to ``side`` pixels along its longer side (never up)."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return np.ascontiguousarray(rgb)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)
