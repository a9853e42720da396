"""Write an evaluation as a markdown report with PNG plots, and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from blindmatch.eval.harness import EvalResult, SchemeResult, TransformResult
from blindmatch.eval.privacy import NEAR_MISS, PrivacyRow, PrivacySummary
from blindmatch.eval.schemes import NO_MATCH

PLAINTEXT = ("robust", "robust+orb")  # what private recall is set beside: what it probes, scan


def _closest(s: SchemeResult) -> int | None:
    """The smallest distractor distance, None where no distractor had any evidence."""
    if not len(s.distractor_min) or int(s.distractor_min.min()) >= NO_MATCH:
        return None
    return int(s.distractor_min.min())


def _recall(t: TransformResult, threshold: int, mask: np.ndarray | None = None) -> float:
    own = t.own if mask is None else t.own[mask]
    return float((own <= threshold).mean()) if len(own) else 0.0


def _privacy_json(p: PrivacySummary) -> dict[str, Any]:
    def row(x: PrivacyRow) -> dict[str, Any]:
        return {
            "group": x.group,
            "images": x.images,
            "innocent_openings": x.opened,
            "innocent_candidates_not_opened": x.candidates,
            "entries_compared": x.entries,
            "openings_per_image": x.rate,
            "openings_per_image_at_5m_extrapolated": x.rate_at_scale,
            "openings_per_image_at_5m_95pct_bound_if_none": x.rate_at_scale_if_none,
            "pdq_bits_revealed_per_image": x.bits_per_image,
            "pdq_bits_revealed_per_image_at_5m_extrapolated": x.bits_at_scale,
            "pdq_bits_revealed_per_image_at_5m_95pct_bound_if_none": x.bits_at_scale_if_none,
        }

    return {
        "lookup_keys": p.scheme,
        "policy": p.policy,
        "hotlines": [{"hotline": h, "jurisdiction": j} for h, j in p.hotlines],
        "listed": p.listed,
        "entries": p.entries,
        "table_bytes": p.table_bytes,
        "voucher_bytes": p.voucher_bytes,
        "client_ms_median": round(p.client_ms_median, 2),
        "server_ms_median": round(p.server_ms_median, 2),
        "vouchers": p.vouchers,
        "unattributed_openings": p.unattributed,
        "distance_check": p.check,
        "innocent": [row(x) for x in p.rows],
        "innocent_openings_per_edit": {
            t: {"opened": o, "n": n} for t, (o, n) in p.per_edit.items()
        },
    }


def to_json(r: EvalResult) -> dict[str, Any]:
    held = r.held_out()
    return {
        "listed": r.listed,
        "distractors": r.distractors,
        "failed": r.failed,
        "seed": r.seed,
        "seconds": round(r.seconds, 1),
        "schemes": [
            {
                "scheme": s.scheme,
                "bits": s.bits,
                "threshold": s.threshold,
                "overall_recall": round(s.overall_recall, 4),
                "distractor_false_matches": s.false_matches,
                "distractor_false_match_rate": s.false_matches / max(1, r.distractors),
                "closest_distractor": _closest(s),
                "list_bytes_per_image": round(s.list_bytes_per_image, 1),
                "queries_per_image": round(s.queries_per_image, 2),
                "client_ms_per_image": round(s.client_ms_per_image, 2),
                "distractor_hits": [
                    {"distractor": d, "listed": li, "distance": dist}
                    for d, li, dist in s.distractor_hits
                ],
                "transforms": [
                    {
                        "transform": t.transform,
                        "n": t.n,
                        "recall": round(t.recall, 4),
                        "recall_held_out": round(_recall(t, s.threshold, held), 4),
                        "threshold_at_99_99": t.threshold_at_target,
                        "recall_at_99_99": round(t.recall_at_target, 4),
                    }
                    for t in s.transforms
                ],
                **({"privacy": _privacy_json(s.privacy)} if s.privacy is not None else {}),
            }
            for s in r.schemes
        ],
        "held_out_listed": int(held.sum()),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def to_markdown(r: EvalResult, plots: list[str], command: str | None = None) -> str:
    lines = ["# Detection quality", ""]
    if command:
        lines += ["Produced by:", "", "```", command, "```", ""]
    lines += [
        f"{r.listed} listed images, {r.distractors} distractors, {len(r.transforms)} transforms, "
        f"seed {r.seed}, {r.seconds:.0f} s. Every image is benign. Listed images are scaled to "
        "fit 1024 px before edits.",
        "",
        "## Summary",
        "",
        "| scheme | threshold | overall recall % | false matches among distractors "
        "| closest distractor | list bytes / image | lookups / image | client ms / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in r.schemes:
        closest = _closest(s)
        cell = "none" if closest is None else str(closest)
        lines.append(
            f"| {s.scheme} | {s.threshold}/{s.bits} | {_pct(s.overall_recall)} | "
            f"{s.false_matches} / {r.distractors} | {cell} | {s.list_bytes_per_image:.0f} | "
            f"{s.queries_per_image:.1f} | {s.client_ms_per_image:.1f} |"
        )
    lines += [
        "",
        "Distances are PDQ bits for every scheme but pHash/dHash (64-bit); for the `orb` "
        "family a distance is that of the aligned central windows' PDQs, and a listed image "
        'it finds no geometric evidence for has none ("closest distractor: none"). Lookups: '
        "PDQ hashes looked up, plus one per keypoint search.",
        "",
        "## Recall per transform",
        "",
        "Each cell: recall % at the scheme's threshold · the largest threshold keeping "
        "precision ≥ 99.99% (negatives: all distractors, and each edited image's distance to "
        "other listed entries) → recall % there.",
        "",
        "| transform | " + " | ".join(s.scheme for s in r.schemes) + " |",
        "|---|" + "---|" * len(r.schemes),
    ]
    for i, t in enumerate(r.transforms):
        cells = []
        for s in r.schemes:
            tr = s.transforms[i]
            at = "—" if tr.threshold_at_target is None else str(tr.threshold_at_target)
            cells.append(f"{_pct(tr.recall)} · {at} → {_pct(tr.recall_at_target)}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    for s in r.schemes:
        if s.privacy is not None:
            lines += _private_section(r, s, s.privacy)
    hits = [(s.scheme, h) for s in r.schemes for h in s.distractor_hits]
    lines += ["", "## Distractor matches", ""]
    if not hits:
        lines.append("None at any scheme's threshold.")
    else:
        lines += [
            "Every distractor within a scheme's threshold of a listed image (the same picture "
            "in two packages counts here too: look before calling it a false match):",
            "",
            "| scheme | distractor | listed image | distance |",
            "|---|---|---|---|",
        ]
        for name, (d, li, dist) in hits[:200]:
            lines.append(f"| {name} | {d} | {li} | {dist} |")
        if len(hits) > 200:
            lines.append(f"| … {len(hits) - 200} more in results.json | | | |")
    if r.failed:
        lines += ["", f"{len(r.failed)} images could not be used:", ""]
        lines += [f"- {f}" for f in r.failed[:20]]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _ratio(num: float, den: float) -> str:
    return "—" if den <= 0 else f"{num / den:.2f}"


def _recall_table(
    r: EvalResult, private: SchemeResult, plain: list[SchemeResult], mask: np.ndarray | None
) -> list[str]:
    """Recall per edit of each plaintext scheme and of ``private``, and private / plaintext."""
    head = [f"{p.scheme} %" for p in plain] + [f"{private.scheme} %"]
    head += [f"{private.scheme} / {p.scheme}" for p in plain]
    out = ["| edit | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    hits = {s.scheme: 0 for s in (*plain, private)}
    total = 0
    for i, name in enumerate(r.transforms):
        rec = {}
        for s in (*plain, private):
            t = s.transforms[i]
            rec[s.scheme] = _recall(t, s.threshold, mask)
            own = t.own if mask is None else t.own[mask]
            hits[s.scheme] += int((own <= s.threshold).sum())
        total += int(len(private.transforms[i].own) if mask is None else mask.sum())
        cells = [_pct(rec[s.scheme]) for s in (*plain, private)]
        cells += [_ratio(rec[private.scheme], rec[p.scheme]) for p in plain]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [_pct(hits[s.scheme] / max(1, total)) for s in (*plain, private)]
    cells += [_ratio(hits[private.scheme], hits[p.scheme]) for p in plain]
    out.append("| **overall** | " + " | ".join(f"**{c}**" for c in cells) + " |")
    return out


def _sci(x: float) -> str:
    return "0" if x == 0 else f"{x:.2g}"


def _private_section(r: EvalResult, s: SchemeResult, p: PrivacySummary) -> list[str]:
    keys = p.scheme
    hot = " and ".join(f"`{h}` ({j})" for h, j in p.hotlines)
    lines = [
        "",
        f"## Private matching (`{s.scheme}`)",
        "",
        "What the messenger runs, not a model of it: the list side is "
        "`blindmatch.protocol.prepare_table` over the listed pictures' PDQs, signed by throwaway "
        "keys and verified by the client (`verify_table`); the client hashes each image with "
        "`blindmatch.private.query_hashes` (the recipe of the Matrix client's `hash_image` and of "
        "`voucher make`) and makes its voucher with `ClientSession.make_voucher(pdq, confidence=, "
        "variants=, commitment=, opening_seed=)`; the server opens it with `ServerSession.open`"
        + (
            " — here in the two rounds of the second distance check: `ServerSession.begin` "
            f"makes the challenge ({p.check['slots']} candidate slot(s), radius "
            f"{p.check['radius']}), the client answers it with `answer_for_image`, and "
            "`ServerSession.finish` opens what the answer discloses. "
            if p.check
            else ". "
        )
        + "A listed picture's distance is the one `OpenResult.matches` reports for its entry "
        f"(matches are confirmed at d ≤ {s.threshold}); no match, no distance.",
        "",
        f"Every picture is listed by two pretend hotlines in two jurisdictions, {hot}: the "
        "governance rule admits only hashes listed by two hotlines in two jurisdictions. "
        f"Policy `{p.policy}`; lookup keys `{keys.get('scheme')}` (k = {keys.get('k')}, "
        f"{keys.get('n_probes')} probes, ≤ {keys.get('max_flips')} flips of the "
        f"{keys.get('weak')} weakest sampled bits, ≤ {keys.get('max_variants')} hashes per "
        f"image, seed {str(keys.get('seed', ''))[:8]}…). {p.entries} entries from {p.listed} "
        f"listed pictures; device table {p.table_bytes:,} B; voucher {p.voucher_bytes:,} B; "
        f"median client {p.client_ms_median:.1f} ms per picture (`query_hashes` + "
        f"`make_voucher`{' + `answer_for_image`' if p.check else ''}), server "
        f"{p.server_ms_median:.1f} ms per voucher "
        f"({'`begin` + `finish`' if p.check else '`open`'}), "
        f"{p.vouchers} vouchers, measured inside the run (shared cores: indicative only).",
    ]
    plain = [x for name in PLAINTEXT for x in r.schemes if x.scheme == name]
    if not plain:
        lines += ["", "(Run it with `robust` and `robust+orb` to see it beside plaintext.)"]
    else:
        held = r.held_out()
        lines += [
            "",
            "### Private recall beside plaintext, per edit",
            "",
            "Recall % at each scheme's threshold; a ratio is private / plaintext recall (— where "
            "plaintext found none). `robust` is what the private path probes (the image's "
            "hashes and its variants); `robust+orb` is what `scan` finds.",
            "",
            f"All {r.listed} listed pictures:",
            "",
            *_recall_table(r, s, plain, None),
            "",
            f"Held out: the {int(held.sum())} odd-numbered listed pictures (the lookup keys' "
            "flip model was fitted on even-numbered ones, docs/protocol.md §11):",
            "",
            *_recall_table(r, s, plain, held),
        ]
    lo, hi = NEAR_MISS
    lines += [
        "",
        "### What the server learns about innocent images",
        "",
        "Innocent images: every distractor, and every edited listed picture taken against the "
        "*other* pictures' entries. An innocent opening is a voucher one of whose probe keys "
        "equals a list key of such an entry: the server opens it and, under `block`, reads its "
        "match layer — the image's PDQ and the variant hashes in the hint — so it counts "
        "256 × (the hint's first byte: the image's own hash and its variant hashes) PDQ bits "
        "revealed. Under a distance-checked table (`+check` schemes) such a key only makes "
        "the image a *candidate*: the server learns the entry and the key's sampled bits "
        "(counted as that many bits revealed, the candidates column) and the voucher opens "
        "only if the second check finds the image within 31 bits of that entry. "
        f"Near misses: the image's closest hash is {lo}–{hi} bits from another "
        "picture's entry (a subset of the first two rows). **The 5M columns are extrapolations**, "
        "not measurements: the per-image figure × 5,000,000 / entries compared (every entry for "
        "a distractor, the others for an edited listed picture), as if openings grew linearly "
        "with the list; where nothing opened, the bracket is the 95% bound that a run of this "
        "size can give (3 / images, scaled the same way; for bits, times the bits an opening "
        "of that group would reveal on average). Near-miss rows are per near-miss "
        "image and not extrapolated (how many images are near misses at 5M depends on what "
        "is listed, not only how much).",
        "",
        "| innocent images | images | innocent openings | candidates (check) | per image "
        "| per image at 5M | PDQ bits revealed per image | at 5M |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in p.rows:
        near = x.group.startswith("near") or "within" in x.group
        if near:
            at, bits_at = "—", "—"
        elif x.opened or x.candidates:
            at, bits_at = _sci(x.rate_at_scale), _sci(x.bits_at_scale)
        else:
            at, bits_at = "0", "0"
            if x.images:
                at += f" (< {_sci(x.rate_at_scale_if_none)})"
                bits_at += f" (< {_sci(x.bits_at_scale_if_none)})"
        lines.append(
            f"| {x.group} | {x.images} | {x.opened} | {x.candidates} | {_sci(x.rate)} | {at} "
            f"| {_sci(x.bits_per_image)} | {bits_at} |"
        )
    edits = [f"{t} {o}/{n}" for t, (o, n) in p.per_edit.items() if o]
    lines += [
        "",
        "Innocent openings per edit: " + (", ".join(edits) if edits else "none") + ". "
        f"The probe keys explained the server's decision (opened or not) on "
        f"{p.vouchers - p.unattributed} of {p.vouchers} vouchers.",
    ]
    return lines


def write_plots(r: EvalResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(r.transforms)), 4.5))
    width = 0.8 / max(1, len(r.schemes))
    x = np.arange(len(r.transforms))
    for k, s in enumerate(r.schemes):
        ax.bar(x + k * width, [100 * t.recall for t in s.transforms], width, label=s.scheme)
    ax.set_xticks(x + width * (len(r.schemes) - 1) / 2, r.transforms, rotation=70, ha="right")
    ax.set_ylabel("recall % at the scheme's threshold")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.set_title("Recall per transform")
    (out / "recall.png").write_bytes(_png(fig))
    plt.close(fig)
    names.append("recall.png")
    for s in r.schemes:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        own = np.concatenate([t.own for t in s.transforms]) if s.transforms else np.zeros(0)
        bins = [float(b) for b in range(0, s.bits // 2 + 2, max(1, s.bits // 64))]
        ax.hist(
            np.minimum(own, s.bits // 2),
            bins=bins,
            alpha=0.6,
            label="edited listed image → its entry",
        )
        ax.hist(np.minimum(s.distractor_min, s.bits // 2), bins=bins, alpha=0.6,
                label="distractor → nearest entry")  # fmt: skip
        ax.axvline(s.threshold, color="k", linestyle="--", label=f"threshold {s.threshold}")
        ax.set_xlabel(f"Hamming distance ({s.bits}-bit {s.scheme})")
        ax.set_ylabel("count")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        name = f"distances-{s.scheme}.png"
        (out / name).write_bytes(_png(fig))
        plt.close(fig)
        names.append(name)
    return names


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def write_report(r: EvalResult, out: Path, command: str | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(r, out)
    (out / "results.json").write_text(json.dumps(to_json(r), indent=1) + "\n")
    path = out / "README.md"
    path.write_text(to_markdown(r, plots, command))
    return path


__all__ = ["SchemeResult", "to_json", "to_markdown", "write_plots", "write_report"]
