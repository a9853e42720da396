"""What a client computes from a picture for private matching: the query hashes.

The one recipe both sides of a voucher use — the sender making it (``blindmatch voucher
make``, the Matrix client's ``send_image``) and the recipient checking it (``voucher
check``, the Matrix client's ``check_event``): the recipient's check compares bytes, so
both must hash the same way (docs/protocol.md §5, "Same hashes on both sides").
"""

from __future__ import annotations

from typing import Any

from blindmatch.hashing.image import MIN_QUALITY
from blindmatch.protocol import QueryHash

# How likely each robust variant is the one near a listed entry, relative to the
# image's own hash (measured: bench/bench_lookup_keys.py, docs/protocol.md §11).
VARIANT_PRIORS = {
    "orig": 1.0,
    "trim": 0.3,
    "other orientation": 0.05,
    "companion": 1.0,
    "companion, brightness": 0.3,
    "companion, other pose": 0.3,
    "companion, frame trimmed": 1.0,
}
# Brightness curves the client tries to undo on its companion (a lighter or darker copy
# of a listed picture): the companion is also hashed after ``p ** gamma`` for each, in the
# pose decided after undoing it (a curve moves the luma's centre of mass, which decides the
# pose: on 60 corpus photos deciding before undoing it opened 0.65 of gamma-1.4 copies,
# after 0.73; with the prior raised from 0.1 to 0.3, 0.92 — unedited copies unchanged).
COMPANION_GAMMAS = (0.7, 1 / 0.7)


def _confidence(vector: Any) -> list[float]:
    """Per-bit confidence of a PDQ: |DCT value − median| (lower = weaker)."""
    import numpy as np

    v = np.asarray(vector, dtype=np.float64)
    return [float(x) for x in np.abs(v - np.median(v))]


def query_hashes(
    pixels: Any, *, pool: Any = None, companions: bool
) -> tuple[bytes, list[float], list[QueryHash]]:
    """What a client looks up for one image against one kind of table, as plaintext robust
    matching does: the full-size PDQ with its bit confidence, and as ``QueryHash``es with
    their priors the robust variants (trimmed frames) and either

    * ``companions=True`` — the table's entries carry companions
      (:attr:`~blindmatch.protocol.VerifiedTable.has_companions`, a list built from
      pictures): the image's companion hash (its canonical pose at 64 px:
      :mod:`blindmatch.hashing.canonical`), also after undoing a brightness curve, in a
      close decision's other pose, and of the picture inside a solid frame trimmed to the
      pixel. The companions find every orientation, so the 7 other orientations are left
      out (~40% of the hashing, opening nothing more); or
    * ``companions=False`` — a bare-PDQ list (every imported hotline list): the 7 other
      orientations and no companions (the voucher would drop them:
      :func:`~blindmatch.protocol.variants_for_table`).

    Pass ``companions=verified.has_companions`` for the voucher's table: the one recipe
    both sides of a voucher use (``voucher make`` and ``voucher check``, the Matrix
    client's sender and recipient), so the recipient recomputes the same probes.
    ``pool`` (a ``concurrent.futures`` executor) hashes the full-size picture and the
    variants concurrently; the result is identical with or without it."""
    from blindmatch.hashing.image import pdq_with_vector_from_rgb
    from blindmatch.hashing.robust import query_variants

    full = pool.submit(pdq_with_vector_from_rgb, pixels) if pool is not None else None
    found = query_variants(pixels, dihedral=not companions, pool=pool)
    pdq, vector = full.result() if full is not None else pdq_with_vector_from_rgb(pixels)
    variants = _companions(pixels, pdq) if companions else []
    for v in found:
        kind = "orig" if v.label == "orig" else ("trim" if v.label.startswith("trim") else
                                                 "other orientation")  # fmt: skip
        if v.pdq.quality < MIN_QUALITY or v.vector is None:
            continue
        variants.append(
            QueryHash(bytes.fromhex(v.pdq.hex), _confidence(v.vector), VARIANT_PRIORS[kind])
        )
    return bytes.fromhex(pdq.hex), _confidence(vector), variants


def _companions(pixels: Any, pdq: Any) -> list[QueryHash]:
    """The image's trusted companion hashes (``pdq``: its full-size PDQ), as
    ``QueryHash``es with ``companion=True``: canonical pose, brightness curves undone,
    a close decision's other poses, the picture inside a solid frame."""
    import numpy as np

    from blindmatch.hashing.canonical import (
        as_image,
        companion_trusted,
        companion_with_vector,
        decide,
        undo_gamma,
    )
    from blindmatch.hashing.robust import find_solid_frame

    image = as_image(pixels)  # one conversion for the pose and every companion
    decision = decide(image)
    looks = [(image, decision.pose, "companion")]
    for g in COMPANION_GAMMAS:
        undone = undo_gamma(image, g)
        looks.append((undone, decide(undone).pose, "companion, brightness"))
    looks += [(image, alt, "companion, other pose") for alt in decision.alternatives]
    frame = find_solid_frame(np.asarray(pixels))
    if frame is not None:
        inner = image.crop(frame)
        looks.append((inner, decide(inner).pose, "companion, frame trimmed"))
    out = []
    for picture, pose, kind in looks:
        comp, comp_vector = companion_with_vector(picture, pose)
        if companion_trusted(comp, pdq):
            prior = VARIANT_PRIORS[kind]
            out.append(
                QueryHash(bytes.fromhex(comp.hex), _confidence(comp_vector), prior, companion=True)
            )
    return out


__all__ = ["VARIANT_PRIORS", "query_hashes"]
