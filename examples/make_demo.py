"""Regenerate the demo study shipped in examples/ (a synthetic head NCCT with a deep hemorrhage).

    python examples/make_demo.py [--force]

writes
    examples/demo_study/IM0001.dcm ...   5 mm axial CT series, 512 x 512, RLE Lossless (a few MB)
    examples/demo_truth.nii.gz           truth mask on exactly the series' grid (2 = hemorrhage)
    examples/demo_truth.json             the case's manifest entry: protocol, lesions, volume_ml per class

The output is a deterministic function of DEMO_SEED and the generator version, so running this again
reproduces the committed files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sdpm_cli.outputs.atomic import write_image, write_json  # noqa: E402
from sdpm_cli.synth import SynthConfig, generate_case  # noqa: E402
from sdpm_cli.synth.writers import write_dicom_series  # noqa: E402

DEMO_SEED = 5
DEMO_CFG = SynthConfig(lesion="hemorrhage", thicknesses_mm=(5.0,), thickness_weights=(1.0,))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: examples/)")
    ap.add_argument("--force", action="store_true", help="replace existing demo files")
    args = ap.parse_args(argv)
    case = generate_case(DEMO_SEED, DEMO_CFG)
    write_dicom_series(case.image, case.meta, args.out / "demo_study", case_number=1, force=args.force, compress=True)
    write_image(case.label, args.out / "demo_truth.nii.gz", force=args.force)
    write_json(args.out / "demo_truth.json", case.meta, force=args.force)
    vols = ", ".join(f"{k} {v:.2f} mL" for k, v in case.meta["volume_ml"].items())
    print(f"wrote {args.out / 'demo_study'} ({case.meta['protocol']['n_slices']} slices) and demo_truth.nii.gz: {vols}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
