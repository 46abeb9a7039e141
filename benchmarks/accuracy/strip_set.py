"""A skull-stripped copy of a test folder, to measure the model on brain-extracted input.

    python benchmarks/accuracy/strip_set.py data/test_setC data/test_setC_strip0 --background 0
    python benchmarks/accuracy/familyC_score.py --data data/test_setC_strip0 --out runs/strip/C0.json

Research data sets often ship CT with the skull and scalp removed (a constant background outside the
brain). Each image of IN/imagesTs is stripped with the classical skull-based brain mask
(`preprocess.brainmask`, grown by --grow-mm so that blood along the inner table stays in, as
stripping tools keep it or not) and its background set to --background HU; labels (and ignoreTs
masks) are copied unchanged, so a lesion cut off by the stripping counts as missed. The model then
reads the stripped volume as any user's would (`ingest` detects the stripping: its foreground is the
brain mask).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sdpm_cli.preprocess.brainmask import brain_mask_array  # noqa: E402


def strip(image: sitk.Image, background: float, grow_mm: float) -> sitk.Image:
    hu = sitk.GetArrayFromImage(image)
    sp = image.GetSpacing()
    brain = brain_mask_array(hu, sp) > 0
    if grow_mm > 0:  # in-plane growth, slice by slice (the slices are thick)
        r = max(1, int(round(grow_mm / sp[0])))
        disk = np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r
        brain = np.stack([ndimage.binary_dilation(s, disk) for s in brain])
    out = np.where(brain, hu, np.asarray(background, dtype=hu.dtype)).astype(hu.dtype)
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(image)
    return img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--background", type=float, default=0.0, help="HU outside the brain (0 or -1024 are common)")
    ap.add_argument("--grow-mm", type=float, default=2.0)
    a = ap.parse_args(argv)
    (a.dst / "imagesTs").mkdir(parents=True, exist_ok=True)
    for sub in ("labelsTs", "ignoreTs"):
        if (a.src / sub).is_dir():
            shutil.copytree(a.src / sub, a.dst / sub, dirs_exist_ok=True)
    for f in ("dataset.json", "manifest.json"):
        if (a.src / f).is_file():
            shutil.copy2(a.src / f, a.dst / f)
    files = sorted((a.src / "imagesTs").glob("*.nii.gz"))
    for p in files:
        sitk.WriteImage(strip(sitk.ReadImage(str(p)), a.background, a.grow_mm), str(a.dst / "imagesTs" / p.name))
    print(f"{len(files)} stripped images in {a.dst / 'imagesTs'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
