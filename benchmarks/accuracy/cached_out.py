"""Each study's `out` mask and skull-based brain mask, segmented once and cached, for the probes that
score rules on them (rim_growth.py, reachable_truth.py): phantom sets and the 12 real slices."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_slices.py beside this file


def segmented(lm, study, cache: Optional[Path], key: str) -> dict:
    """{"pred", "brain"}: `out` labels (the model's own filter) and the brain mask on the study grid
    (uint8 [Z, Y, X]; cached as KEY.npz in `cache`)."""
    import SimpleITK as sitk

    from sdpm_cli.pipeline import segment_study

    f = cache / f"{key}.npz" if cache else None
    if f is not None and f.exists():
        return dict(np.load(f))
    seg = segment_study(study, model=lm, mode="out", seed=0)
    d = {"pred": sitk.GetArrayFromImage(seg.labels).astype(np.uint8),
         "brain": sitk.GetArrayFromImage(seg.brain).astype(np.uint8)}
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(f, **d)
    return d


def phantom_studies(lm, sets: list[str], cache: Optional[Path]) -> Iterator[tuple]:
    """(set name, case, image, truth labels [Z, Y, X], masks) for every study of each NAME=FOLDER;
    a study the ingest refuses is reported and skipped (as in sdpm evaluate)."""
    import SimpleITK as sitk

    from sdpm_cli.evaluate.cases import dataset_cases

    for spec in sets:
        name, folder = spec.split("=", 1)
        for pair in dataset_cases(Path(folder), "test"):
            try:
                d = segmented(lm, pair.image, cache, f"{Path(folder).name}__{pair.case}")
            except Exception as exc:
                print(name, pair.case, "not scored:", str(exc).splitlines()[0], flush=True)
                continue
            yield name, pair.case, sitk.ReadImage(str(pair.image)), sitk.GetArrayFromImage(sitk.ReadImage(str(pair.truth))), d


def real_slices(lm, cache: Optional[Path]) -> Iterator[tuple]:
    """(case, the slice as a one-slice image, truth bool [Y, X], masks of that slice [1, Y, X]) for the
    12 real slices as stored, each segmented as real_slices.py does (a 20-slice column; the middle
    slice scored)."""
    import SimpleITK as sitk

    import real_slices as rs

    mid = rs.N_REPEAT // 2
    for case, ct, mask in rs.cases():
        col = rs.column(rs.read_slice(ct))
        truth = sitk.GetArrayFromImage(rs.column(rs.read_slice(mask), 1))[0] > 0
        d = segmented(lm, rs._ColumnStudy(col, case), cache, f"real__{case}")
        yield case, col[:, :, mid : mid + 1], truth, {k: v[mid : mid + 1] for k, v in d.items()}
