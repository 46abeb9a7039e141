"""What `sdpm evaluate` writes: per_case.csv, summary.json, table1.md and two PNG plots.

Every file goes through `sdpm_cli.outputs.atomic`, so a failed run leaves none of them half-written,
and `planned_outputs` lets the command refuse existing files before any case is scored.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sdpm_cli import __version__
from sdpm_cli.evaluate.scoring import CONVENTIONS, STATUS_OK, CaseScore
from sdpm_cli.outputs.atomic import check_writable, write_json, write_text

OUTPUT_NAMES = ("per_case.csv", "summary.json", "table1.md", "volume_scatter.png", "bland_altman.png")


def planned_outputs(out_dir: Path, force: bool) -> dict[str, Path]:
    """Paths of every output, each checked for --force before any work starts."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        from sdpm_cli.errors import UsageError

        raise UsageError(f"--out is a file, not a folder: {out_dir}")
    return {name: check_writable(out_dir / name, force) for name in OUTPUT_NAMES}


def _num(x) -> Optional[float]:
    """JSON has no NaN: undefined values become null."""
    if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
        return None
    if isinstance(x, np.generic):
        return x.item()
    return x


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return _num(obj)


def per_case_csv(rows: Sequence[CaseScore]) -> str:
    """One line per (mode, case, class); undefined values are empty cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = CaseScore.columns()
    w.writerow(cols)
    for r in rows:
        d = r.as_dict()
        w.writerow(["" if _num(d[c]) is None else (f"{d[c]:.6g}" if isinstance(d[c], float) else d[c]) for c in cols])
    return buf.getvalue()


def summary_dict(rows: Sequence[CaseScore], summary: dict, source: dict) -> dict:
    """The summary.json document: aggregates per mode and class, failures, and the conventions used."""
    failed = sorted({(r.mode, r.case, r.status, r.reason) for r in rows if r.status != STATUS_OK})
    return _clean(
        {
            "sdpm_version": __version__,
            "source": source,
            "n_cases": len({r.case for r in rows}),
            "failures": [{"mode": m, "case": c, "status": s, "reason": why} for m, c, s, why in failed],
            "modes": summary,
            "conventions": CONVENTIONS,
        }
    )


def _f(x: float, nd: int = 3, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.1f}%" if pct else f"{x:.{nd}f}"


def table1_markdown(summary: dict) -> str:
    """Rows = modes; columns = Dice | VC | VDP for each class (the shape of the paper's Table 1),
    then a fuller table with every aggregate."""
    modes = list(summary)
    classes = list(dict.fromkeys(c for m in modes for c in summary[m]))
    head = ["Method"] + [f"{c.capitalize()} {k}" for c in classes for k in ("Dice", "VC", "VDP")]
    lines = ["# Evaluation", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in modes:
        cells = [m]
        for c in classes:
            s = summary[m].get(c, {})
            cells += [_f(s.get("dice_mean")), _f(s.get("vc_pearson")), _f(s.get("vdp_percent"), pct=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Dice: mean over cases (1 when prediction and truth are both empty). VC: Pearson r of predicted vs true",
        "volume over cases. VDP: mean |Vp - Vt| / Vt over cases with a lesion in the truth.",
        "",
        "## All metrics",
        "",
    ]
    full = [
        "Method", "Class", "n", "failed", "Dice", "IoU", "HD95 mm (n)", "abs dV mL", "BA bias mL",
        "BA LoA mL", "Lesion sens.", "FP mL (lesion-free, n)",
    ]  # fmt: skip
    lines += ["| " + " | ".join(full) + " |", "|" + "---|" * len(full)]
    for m in modes:
        for c in classes:
            s = summary[m].get(c)
            if not s:
                continue
            lines.append(
                "| "
                + " | ".join(
                    [
                        m,
                        c,
                        str(s["n_cases"]),
                        str(s["n_failed"]),
                        f"{_f(s['dice_mean'])} ± {_f(s['dice_sd'])}",
                        _f(s["iou_mean"]),
                        f"{_f(s['hd95_mm_mean'], 1)} ({s['hd95_n_defined']})",
                        _f(s["abs_vol_err_ml_mean"], 2),
                        _f(s["ba_bias_ml"], 2),
                        f"[{_f(s['ba_loa_low_ml'], 2)}, {_f(s['ba_loa_high_ml'], 2)}]",
                        f"{_f(s['lesion_sensitivity'], 2)} ({s['lesions_detected']}/{s['lesions_true']})",
                        f"{_f(s['fp_volume_ml_mean_lesion_free'], 2)} ({s['n_lesion_free']})",
                    ]
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


def _volumes(rows: Sequence[CaseScore], mode: str, cls: str) -> tuple[np.ndarray, np.ndarray]:
    ok = [r for r in rows if r.status == STATUS_OK and r.mode == mode and r.lesion_class == cls]
    return np.array([r.vol_pred_ml for r in ok], float), np.array([r.vol_truth_ml for r in ok], float)


def _plot(rows: Sequence[CaseScore], summary: dict, dest: Path, force: bool, kind: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from sdpm_cli.outputs.preview import save_figure

    modes = list(summary)
    classes = list(dict.fromkeys(c for m in modes for c in summary[m]))
    fig, axes = plt.subplots(1, len(classes), figsize=(5.2 * len(classes), 4.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, cls in zip(axes[0], classes):
        top = 0.0
        for i, m in enumerate(modes):
            vp, vt = _volumes(rows, m, cls)
            col = colours(i % 10)
            if kind == "scatter":
                r = summary[m][cls]["vc_pearson"]
                ax.scatter(vt, vp, s=18, color=col, label=f"{m} (r = {_f(r)})")
                top = max(top, float(np.max(vt, initial=0)), float(np.max(vp, initial=0)))
            else:
                s = summary[m][cls]
                ax.scatter((vp + vt) / 2, vp - vt, s=18, color=col, label=f"{m} (bias {_f(s['ba_bias_ml'], 2)} mL)")
                for key, style in (("ba_bias_ml", "-"), ("ba_loa_low_ml", "--"), ("ba_loa_high_ml", "--")):
                    if s[key] is not None and math.isfinite(s[key]):
                        ax.axhline(s[key], color=col, linestyle=style, linewidth=1)
        if kind == "scatter":
            lim = top * 1.05 if top > 0 else 1.0
            ax.plot([0, lim], [0, lim], color="0.5", linewidth=1, linestyle=":", label="identity")
            ax.set_xlim(-0.02 * lim, lim)
            ax.set_ylim(-0.02 * lim, lim)
            ax.set_xlabel("true volume (mL)")
            ax.set_ylabel("predicted volume (mL)")
        else:
            ax.axhline(0, color="0.5", linewidth=0.8, linestyle=":")
            ax.set_xlabel("mean of predicted and true volume (mL)")
            ax.set_ylabel("predicted − true (mL)")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(6))
        ax.set_title(cls)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Volume agreement" if kind == "scatter" else "Bland–Altman (lines: bias, bias ± 1.96 sd)")
    fig.tight_layout()
    try:
        return save_figure(fig, dest, force)
    finally:
        plt.close(fig)


def write_evaluation(
    out_dir: Path, rows: Sequence[CaseScore], summary: dict, *, source: dict, force: bool = False
) -> dict[str, Path]:
    """Write all evaluation outputs into out_dir; returns their paths by name."""
    paths = planned_outputs(out_dir, force)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_text(paths["per_case.csv"], per_case_csv(rows), force)
    write_json(paths["summary.json"], summary_dict(rows, summary, source), force)
    write_text(paths["table1.md"], table1_markdown(_clean(summary)), force)
    _plot(rows, _clean(summary), paths["volume_scatter.png"], force, "scatter")
    _plot(rows, _clean(summary), paths["bland_altman.png"], force, "bland_altman")
    return paths
