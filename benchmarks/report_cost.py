"""The report's per-lesion rows alone (`outputs.report.lesion_rows`: components, ABC/2, locations),
this checkout beside an earlier one, in one run.

    git worktree add /tmp/base <commit>
    sdpm segment examples/demo_study --mode out --out runs/demo_mask.nii.gz --force -q
    python benchmarks/report_cost.py --study examples/demo_study --mask runs/demo_mask.nii.gz \
        --baseline-code /tmp/base --rounds 2 --out runs/report_cost.json

Each round runs one fresh process per checkout (interleaved, so a busy machine slows both alike);
a process ingests the study once, computes the brain mask once (as `segment` hands it over) and
times `lesion_rows(mask, CT, brain)` --repeat times. The rows of both checkouts must be equal, or
the script stops: a faster report that says something else is not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, dump, machine_description  # noqa: E402

_CHILD = r"""
import json, sys, time
import SimpleITK as sitk
from sdpm_cli.ingest import load_study
from sdpm_cli.outputs.report import lesion_rows
from sdpm_cli.preprocess.brainmask import brain_mask
study, mask, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
st = load_study(study)
lab = sitk.ReadImage(mask)
lab.CopyInformation(st.image)
brain = brain_mask(st.image)
times = []
for _ in range(repeat):
    t = time.perf_counter()
    rows = lesion_rows(lab, st.image, brain)
    times.append(time.perf_counter() - t)
print(json.dumps({"s": times, "rows": rows}, default=str))
"""


def run(code: Path, study: str, mask: str, repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", _CHILD, study, mask, str(repeat)], env=env, cwd=str(code),
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{code}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(REPO / "examples" / "demo_study"))
    ap.add_argument("--mask", required=True, help="a label image on the study's grid (e.g. sdpm segment's mask)")
    ap.add_argument("--baseline-code", required=True, help="an earlier checkout (git worktree)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="runs/report_cost.json")
    args = ap.parse_args()
    study, mask = str(Path(args.study).resolve()), str(Path(args.mask).resolve())
    times: dict[str, list[float]] = {"this": [], "baseline": []}
    rows = {}
    for _ in range(args.rounds):
        for name, code in (("baseline", Path(args.baseline_code).resolve()), ("this", REPO)):
            res = run(code, study, mask, args.repeat)
            times[name] += res["s"]
            rows[name] = res["rows"]
    if rows["this"] != rows["baseline"]:
        raise SystemExit("the two checkouts give different lesion rows: not comparable")
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    result = {"machine": machine_description(), "study": args.study, "mask": args.mask, "n_lesions": len(rows["this"]),
              "seconds": times, "median_s": med, "speedup": med["baseline"] / med["this"], "rows_equal": True}
    dump(result, Path(args.out))
    print(f"lesion_rows, {len(rows['this'])} lesion(s): baseline {med['baseline']:.3f} s, this {med['this']:.3f} s "
          f"(median of {len(times['this'])}), {result['speedup']:.2f}x; rows equal")


if __name__ == "__main__":
    main()
