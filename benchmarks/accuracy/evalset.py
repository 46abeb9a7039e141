"""Join `sdpm synth` test folders into one evaluation set (symlinks; nnU-Net imagesTs/labelsTs layout).

    python benchmarks/accuracy/evalset.py data/evalA data/testA data/testA_none:free

Each SOURCE is a folder written by `sdpm synth ... --test-fraction 1`, optionally followed by
`:PREFIX`; its cases are linked as PREFIX_<case> (no prefix: the case name as is). Lesion-free
studies get the prefix `free` so that `table.py` reports their false-positive volume.
"""

from __future__ import annotations

import sys
from pathlib import Path


def link_set(out: Path, sources: list[str]) -> int:
    (out / "imagesTs").mkdir(parents=True, exist_ok=True)
    (out / "labelsTs").mkdir(parents=True, exist_ok=True)
    n = 0
    for spec in sources:
        src, _, prefix = spec.partition(":")
        src_p = Path(src).resolve()
        for lab in sorted((src_p / "labelsTs").glob("*.nii.gz")):
            case = lab.name[: -len(".nii.gz")]
            img = src_p / "imagesTs" / f"{case}_0000.nii.gz"
            if not img.is_file():
                continue
            name = f"{prefix}_{case}" if prefix else case
            for dst, target in ((out / "labelsTs" / f"{name}.nii.gz", lab), (out / "imagesTs" / f"{name}_0000.nii.gz", img)):
                if dst.is_symlink() or dst.exists():
                    dst.unlink()
                dst.symlink_to(target)
            n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    print(f"{link_set(Path(sys.argv[1]), sys.argv[2:])} cases linked into {sys.argv[1]}")
