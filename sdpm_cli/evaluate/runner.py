"""The two ways `sdpm evaluate` gets its cases: existing prediction files, or segmenting a dataset.

Both return an `EvalRun` (per-case rows, warnings, a description of the source) that
`sdpm_cli.evaluate.report.write_evaluation` turns into files. Nothing is written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import SimpleITK as sitk

from sdpm_cli.errors import InputRejected, ModelError, UsageError
from sdpm_cli.evaluate.cases import (
    CasePair,
    case_name,
    check_same_grid,
    dataset_cases,
    pair_folders,
    read_header,
    read_labels,
)
from sdpm_cli.evaluate.scoring import STATUS_FAILED, STATUS_MISSING, STATUS_OK, CaseScore, failed_case, score_case
from sdpm_cli.modes import MODES as ALL_MODES


@dataclass
class EvalRun:
    rows: list[CaseScore]
    source: dict
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        """(mode, case, reason) of every case that was not scored."""
        seen = dict.fromkeys((r.mode, r.case, r.reason) for r in self.rows if r.status != STATUS_OK)
        return list(seen)

    @property
    def n_scored(self) -> int:
        return len({(r.mode, r.case) for r in self.rows if r.status == STATUS_OK})


def _score(pred: sitk.Image, truth: sitk.Image, case: str, mode: str, what: str) -> list[CaseScore]:
    check_same_grid(pred, truth, case, what)
    return score_case(
        sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(truth), truth.GetSpacing(), case=case, mode=mode
    )


def evaluate_folders(pred_dir: Path, truth_dir: Path, *, name: Optional[str] = None) -> EvalRun:
    """Score nnU-Net-style prediction files against truth files of the same case name.

    Every grid is checked from the file headers before any voxel is read, so a mismatch is refused
    (naming the case) before work starts; a missing prediction is recorded as a failure.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    method = name or pred_dir.resolve().name or "prediction"
    pairs, extra = pair_folders(pred_dir, truth_dir)
    if not any(p.pred for p in pairs):
        raise InputRejected(f"none of the {len(pairs)} truth cases has a prediction in {pred_dir} (matched by file name)")
    for p in pairs:
        if p.pred is not None:
            check_same_grid(read_header(p.pred, p.case, "prediction"), read_header(p.truth, p.case, "truth"), p.case)
    rows: list[CaseScore] = []
    warnings = [f"prediction {c} has no truth in {truth_dir}: not scored" for c in extra]
    for p in pairs:
        if p.pred is None:
            rows += failed_case(p.case, method, STATUS_MISSING, f"no prediction for {p.case} in {pred_dir.name}")
            continue
        truth = read_labels(p.truth, p.case, "truth")
        pred = read_labels(p.pred, p.case, "prediction")
        rows += _score(pred, truth, p.case, method, "prediction")
    source = {
        "kind": "folders",
        "method": method,
        "pred_dir": str(pred_dir),
        "truth_dir": str(truth_dir),
        "unmatched_predictions": extra,
    }
    return EvalRun(rows=rows, source=source, warnings=warnings)


def parse_modes(spec: str) -> list[str]:
    """`out,salient` -> ["out", "salient"]; refuses unknown or repeated modes."""
    modes = [m.strip().lower() for m in spec.split(",") if m.strip()]
    if not modes:
        raise UsageError("--modes is empty (choose from out, salient, infer, union)")
    bad = [m for m in modes if m not in ALL_MODES]
    if bad:
        raise UsageError(f"unknown mode '{bad[0]}' in --modes (choose from {', '.join(ALL_MODES)})")
    if len(set(modes)) != len(modes):
        raise UsageError("--modes lists a mode twice")
    return modes


def _looks_like_volume_file(path: Path) -> bool:
    return case_name(path) is not None and path.is_file()


def evaluate_dataset(
    data: Path,
    *,
    modes: Sequence[str],
    model=None,
    preset: str = "fast",
    seed: int = 0,
    device: str = "auto",
    split: str = "test",
    progress: Optional[Callable[[int, int, str], None]] = None,
    lesion_filter: Optional[dict] = None,
) -> EvalRun:
    """Segment every case of a dataset with the model, then score each requested mode.

    Several modes come from one `union` run (it computes all four). A case the pipeline refuses
    is recorded as failed and the rest go on; a model problem stops the run (exit 4).
    """
    from sdpm_cli.engine import Engine, isolated
    from sdpm_cli.pipeline import SegmentOptions

    modes = list(modes)
    pairs: list[CasePair] = dataset_cases(Path(data), split)
    for p in pairs:  # cheap grid checks first, where the image is a volume file
        if p.image is not None and _looks_like_volume_file(p.image):
            check_same_grid(read_header(p.image, p.case, "image"), read_header(p.truth, p.case, "truth"), p.case, "image")
    run_mode = modes[0] if len(modes) == 1 else "union"
    engine = Engine(model, device=device, options=SegmentOptions(mode=run_mode, preset=preset, seed=seed,
                                                                  lesion_filter=lesion_filter))
    lm, warnings = engine.model, list(engine.warnings)
    rows: list[CaseScore] = []
    for i, p in enumerate(pairs):
        if progress:
            progress(i, len(pairs), p.case)
        truth = read_labels(p.truth, p.case, "truth")
        seg, failure = isolated(lambda: engine.segment(p.image))  # the engine's failure policy
        if failure is not None:
            for m in modes:
                rows += failed_case(p.case, m, STATUS_FAILED, failure[1])
            continue
        for w in getattr(seg, "warnings", []) or []:
            warnings.append(f"{p.case}: {w}")
        for m in modes:
            if m not in seg.labels_by_mode:
                raise ModelError(f"the pipeline returned no '{m}' labels for case {p.case}")
            scored = _score(seg.labels_by_mode[m], truth, p.case, m, "segmentation")
            vols = (getattr(seg, "volumes_by_mode", None) or {}).get(m, {})
            for r in scored:
                v = vols.get(r.lesion_class)
                if v is not None:
                    r.band_ml = float(v.band_ml)
                    if v.ci95_ml is not None:
                        r.ci_lo_ml, r.ci_hi_ml = (float(x) for x in v.ci95_ml)
            rows += scored
    if progress:
        progress(len(pairs), len(pairs), "")
    source = {
        "kind": "dataset",
        "data": str(data),
        "split": split if Path(data).is_dir() else None,
        "modes": modes,
        "preset": preset,
        "seed": seed,
        "device": str(getattr(lm, "device", device)),
        "model": {"name": getattr(lm, "name", str(model)), "sha256": getattr(lm, "sha256", "")},
    }
    return EvalRun(rows=rows, source=source, warnings=warnings)
