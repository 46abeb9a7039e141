"""Measured vs true change on synthetic scan pairs (`sdpm compare`'s API with the shipped model).

Each pair: a family A phantom (sdpm synth, clinical domain, 256 matrix, 5 mm) as baseline; the
follow-up is the same head moved rigidly (a few degrees, a few mm) with its lesion grown by a
dilation of `grow_mm` or unchanged (sdpm_cli.compare.phantom.make_pair). The truth change is
counted on each scan's own truth label. Prints a Markdown table (paste into BENCHMARKS.md).

    PYTHONPATH=$PWD python benchmarks/accuracy/compare_pairs.py [--model M.pt]
"""

from __future__ import annotations

import argparse
import platform
import time

from sdpm_cli.compare import compare_scans, scan_from_segmentation
from sdpm_cli.compare.phantom import PairSpec, default_case, make_pair, target_error_mm

# (phantom seed, lesion kind, rotation deg, shift mm, grow mm)
PAIRS = [
    (3, "hemorrhage", (3.0, -2.0, 4.0), (5.0, -4.0, 3.0), 4.0),
    (3, "hemorrhage", (-2.0, 3.0, -3.0), (-3.0, 6.0, -2.0), 0.0),
    (5, "hemorrhage", (2.0, 2.0, -5.0), (4.0, 3.0, 5.0), 3.0),
    (5, "hemorrhage", (4.0, -1.0, 2.0), (-6.0, -2.0, 1.0), 0.0),
    (11, "infarct", (-3.0, -2.0, 3.0), (2.0, -5.0, -4.0), 4.0),
    (11, "infarct", (1.0, 4.0, -2.0), (6.0, 2.0, 2.0), 0.0),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--matrix", type=int, default=256)
    args = ap.parse_args()
    from sdpm_cli.pipeline import load_model, segment_study

    lm, _ = load_model(args.model, "cpu")
    print(f"model {lm.name}; {platform.processor() or platform.machine()}, {platform.python_version()}")
    print("| pair | class | rotation / shift | grow | true change mL | measured change mL | error mL | "
          "change interval mL | expansion call | brain Dice | TRE mm | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k, (seed, kind, rot, shift, grow) in enumerate(PAIRS, 1):
        t0 = time.perf_counter()
        case = default_case(seed, matrix=args.matrix, lesion=kind)
        label = 2 if kind == "hemorrhage" else 1
        pair = make_pair(case, PairSpec(rotation_deg=rot, shift_mm=shift, grow_mm=grow, grow_label=label, seed=k))
        scans = [scan_from_segmentation(segment_study(_study(img), model=lm, mode="out", seed=0))
                 for img in (pair.baseline, pair.followup)]
        cmp = compare_scans(*scans)
        c = cmp.classes[kind]
        true = pair.meta["true_change_ml"][label]
        iv = c.change.change_ci
        tre = target_error_mm(cmp.registration.transform, pair.motion, pair.baseline)
        print(f"| {k} (seed {seed}) | {kind} | {_angle(pair.motion):.1f} deg / {sum(s * s for s in shift) ** 0.5:.1f} mm "
              f"| {grow:g} mm | {true:+.1f} | {c.change.change_ml:+.1f} | {c.change.change_ml - true:+.1f} | "
              + ("-" if iv is None else f"{iv[0]:+.1f} to {iv[1]:+.1f}")
              + f" | {c.calls['expansion'].call} (point {'yes' if c.calls['expansion'].point else 'no'}) | "
              f"{cmp.registration.brain_dice:.3f} | {tre:.2f} | {time.perf_counter() - t0:.0f} |", flush=True)


def _angle(t) -> float:
    from sdpm_cli.compare.register import angle_of

    return angle_of(t)


def _study(img):
    """A Study from an in-memory volume, as the ingest builds one for a NIfTI file."""
    import tempfile
    from pathlib import Path

    import SimpleITK as sitk

    from sdpm_cli.ingest import load_study

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "scan.nii.gz"
        sitk.WriteImage(img, str(p))
        return load_study(p)


if __name__ == "__main__":
    main()
