"""How often does the anatomy check (sdpm_cli.preprocess.orientation) turn a head, and which way?

    python benchmarks/accuracy/orientation.py --set A=data/valA --set B=data/valB ... --real --out runs/orient/check.json

Every study of every set (nnU-Net folders: imagesTs/ or imagesTr/) is judged as stored (its header is
right: any turn is a false turn), and turned by 1, 2 and 3 quarter turns under the same header
(a header that is wrong: the right answer undoes the turn; 2 must never be turned). The real CT-ICH
slices (`--real`) are stored lying on their side (1 quarter turn stands them upright), so there the
right answer as stored is 1. Counts per set: right, none (not turned), wrong (turned the wrong way),
suspect (not turned but warned). The check alone, no model: seconds per set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import SimpleITK as sitk
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import dump  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sdpm_cli.preprocess.orientation import check_image, quarter_turned  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "real_ich_slices"


def judge(image: sitk.Image, stored_turns: int, needed: int, times: list | None = None) -> str:
    """Verdict on `image` turned by stored_turns under its header; `needed` quarter turns stand the
    result upright. `times` collects the check's own time (the turning excluded)."""
    img = quarter_turned(image, stored_turns) if stored_turns % 4 else image
    t0 = time.perf_counter()
    c = check_image(img)
    if times is not None:
        times.append(time.perf_counter() - t0)
    if c.turned:
        return "right" if c.quarter_turns % 4 == needed % 4 and needed % 4 in (1, 3) else "wrong"
    return "suspect" if c.suspect else "none"


def run_set(folder: Path) -> dict:
    files = sorted((folder / "imagesTs").glob("*.nii.gz")) + sorted((folder / "imagesTr").glob("*.nii.gz"))
    out = {f"stored+{k}": Counter() for k in range(4)}
    t = []
    for f in files:
        img = sitk.ReadImage(str(f))
        for k in range(4):
            out[f"stored+{k}"][judge(img, k, -k, t)] += 1
    return {"n": len(files), **{k: dict(v) for k, v in out.items()}, "median_s": float(np.median(t)) if t else None}


def run_real(folder: Path) -> dict:
    out = {f"stored+{k}": Counter() for k in range(4)}
    for f in sorted(folder.glob("*_ct.nii.gz")):
        img = sitk.ReadImage(str(f))
        for k in range(4):  # stored as-is needs 1 turn; stored + k needs 1 - k
            out[f"stored+{k}"][judge(img, k, 1 - k)] += 1
    return {k: dict(v) for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER")
    ap.add_argument("--real", action="store_true", help="also the real CT-ICH slices of ../shared/fixtures")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    res: dict = {}
    for spec in a.set:
        name, folder = spec.split("=", 1)
        r = run_set(Path(folder))
        prev = res.get(name)
        if prev:  # several folders under one name: add the counts up
            for k, v in r.items():
                if isinstance(v, dict):
                    prev[k] = dict(Counter(prev[k]) + Counter(v))
            prev["n"] += r["n"]
        else:
            res[name] = r
    if a.real:
        if not FIXTURES.is_dir():
            print(f"no fixtures at {FIXTURES}", file=sys.stderr)
            return 3
        res["real CT-ICH slices (as stored: on their side)"] = run_real(FIXTURES)
    for name, r in res.items():
        print(name, json.dumps({k: v for k, v in r.items()}))
    if a.out:
        dump(res, Path(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
