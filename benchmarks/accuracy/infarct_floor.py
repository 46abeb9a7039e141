"""Drop from a training list the studies whose infarct is fainter than a floor (the p2d4 experiment).

    python benchmarks/accuracy/infarct_floor.py data/train_mix.csv --min-delta-hu 4 --out data/train_mix_d4.csv
    python benchmarks/accuracy/infarct_floor.py data/train_mix.csv --min-delta-hu 4 --control 7 \
        --out data/train_mix_ctrl.csv      # the control: as many studies dropped, chosen at random among the others

`sdpm synth` records per lesion how far an infarct lies below the tissue it replaces (`delta_hu` in the
manifest; family A's randomised domain draws 2-16 HU for territorial and shapeless infarcts). A study
is dropped when any of its infarcts lies less than --min-delta-hu below its tissue; its blood and
mimics go with it, so `--control SEED` drops the same number of other studies at random, to tell the
effect of the faint infarcts from that of a smaller, different training set. The list is
`sdpm train`'s CSV (case,image,label; image paths relative to the CSV's folder); each case's
manifest is found as `<image's dataset folder>/manifest.json` by the case id after its prefix
(`C_synth_0001` -> `synth_0001`).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path


def faint_cases(rows: list[dict], root: Path, min_delta_hu: float) -> set[str]:
    """The listed cases holding an infarct less than `min_delta_hu` below the tissue it replaces."""
    manifests: dict[Path, dict] = {}
    faint = set()
    for r in rows:
        folder = (root / r["image"]).parent.parent
        if folder not in manifests:
            m = json.loads((folder / "manifest.json").read_text())
            manifests[folder] = {c["id"]: c for c in m["cases"]}
        by_id = manifests[folder]
        cid = next((i for i in by_id if r["case"] == i or r["case"].endswith("_" + i)), None)
        if cid is None:
            raise SystemExit(f"{r['case']}: not in {folder / 'manifest.json'}")
        if any(les["class"] == 1 and float(les.get("delta_hu", float("inf"))) < min_delta_hu
               for les in by_id[cid]["lesions"]):
            faint.add(r["case"])
    return faint


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path, help="sdpm train's case list")
    ap.add_argument("--min-delta-hu", type=float, default=4.0)
    ap.add_argument("--control", type=int, default=None, metavar="SEED",
                    help="drop as many studies chosen at random among those without a faint infarct instead")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    with open(a.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    faint = faint_cases(rows, a.csv.parent, a.min_delta_hu)
    drop = faint
    if a.control is not None:
        others = sorted(r["case"] for r in rows if r["case"] not in faint)
        drop = set(random.Random(a.control).sample(others, len(faint)))
    keep = [r for r in rows if r["case"] not in drop]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(keep)
    print(f"{len(rows)} studies, {len(faint)} with an infarct < {a.min_delta_hu:g} HU below its tissue; "
          f"{len(drop)} dropped ({'at random, seed ' + str(a.control) if a.control is not None else 'those'}), "
          f"{len(keep)} written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
