"""Write an evaluation as a markdown report with PNG plots, and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from blindmatch.eval.harness import EvalResult, SchemeResult
from blindmatch.eval.schemes import NO_MATCH


def _closest(s: SchemeResult) -> int | None:
    """The smallest distractor distance, None where no distractor had any evidence."""
    if not len(s.distractor_min) or int(s.distractor_min.min()) >= NO_MATCH:
        return None
    return int(s.distractor_min.min())


def to_json(r: EvalResult) -> dict[str, Any]:
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
                        "threshold_at_99_99": t.threshold_at_target,
                        "recall_at_99_99": round(t.recall_at_target, 4),
                    }
                    for t in s.transforms
                ],
            }
            for s in r.schemes
        ],
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
