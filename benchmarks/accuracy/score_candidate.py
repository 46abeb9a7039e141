"""Score a candidate checkpoint the way every row of the model card's candidate tables was made.

    python benchmarks/accuracy/score_candidate.py runs/prod/p2r.pt --out runs/ev_p2r
    python benchmarks/accuracy/score_candidate.py models/sdpm-default.pt --out runs/ev_shipped --skip-filter

One command per candidate, so that a model is never compared on a subset of the evidence (a
candidate scored on the real slices alone looked level with the shipped model and then tripled
false infarct on family C). In order, each step a subprocess writing into OUT:

1. the lesion filter chosen on VALIDATION studies of families A and B (`postprocess.py`, the shipped
   rule, written into OUT/f.pt; `--skip-filter` scores the checkpoint itself, with its own filter);
2. `sdpm evaluate --modes out` on the validation sets A and B (OUT/valA, OUT/valB);
3. the 12 real slices as stored and upright (`real_slices.py`; OUT/real.json, OUT/real_up.json);
4. family C, a real head with lesions blended in - a TEST family: it is reported, never used to
   choose anything (`familyC_score.py`; OUT/familyC.json);
5. `sdpm evaluate --modes out` on 24 more lesion-free validation studies per family (OUT/freeA,
   OUT/freeB; `--free-a`/`--free-b`, skipped where the folder does not exist): six per family
   could not tell two models' false lesion apart (p3avg, model card "What the test sets then showed");

then prints one table row (OUT/row.json): validation Dice with lesion (infarct · hemorrhage) and
false lesion mL per lesion-free study for A and B, the real slices upright mean / pooled, family C
hemorrhage · subdural Dice and false infarct mL on its cases without one (outside the patient's own
finding), and, with the extra sets, false infarct and false lesion per lesion-free validation study
of each family over all its lesion-free studies. `--against ROW.json` (the default's row) judges the
candidate by the model card's selection rule (`judge`). Steps whose output exists are not rerun
(`--redo` reruns them), so a run cut short resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from table import fp_on_lesion_free, lesion_free_volumes  # noqa: E402  (the one definition of the figure)

from sdpm_cli.errors import EXIT_PARTIAL  # noqa: E402


def _run(cmd: list[str], log: Path, partial_ok: bool = False) -> None:
    """Run one step, its output into `log`; stop with the step's name on failure. With partial_ok,
    `sdpm evaluate`'s EXIT_PARTIAL (a study the ingest refuses, e.g. a field of view cutting the
    skull; the same studies for every model) is accepted: the scored studies are in its files."""
    with log.open("w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc == EXIT_PARTIAL and partial_ok:
        print(f"note: some studies not scored (refused by the ingest), see {log}")
    elif rc != 0:
        sys.exit(f"step failed (exit {rc}): {' '.join(cmd)}; see {log}")


def validation_row(folder: Path) -> tuple[float, float, float]:
    """(infarct Dice, hemorrhage Dice) over studies with the class, and the mean false lesion mL per
    lesion-free study (`table.fp_on_lesion_free`), from an `sdpm evaluate --modes out` folder."""
    summary = json.loads((folder / "summary.json").read_text())["modes"]["out"]
    fp = fp_on_lesion_free(folder / "per_case.csv").get("out", float("nan"))
    return (summary["infarct"]["dice_mean_with_lesion"],
            summary["hemorrhage"]["dice_mean_with_lesion"], fp)


def lesion_free_by_class(folders: list[Path]) -> dict:
    """False infarct, false hemorrhage and false lesion mL per lesion-free study, pooled over the
    lesion-free studies (`free_...`, `out`) of every folder given; absent folders are skipped."""
    studies = [c for f in folders if (f / "per_case.csv").exists()
               for c in lesion_free_volumes(f / "per_case.csv").get("out", {}).values()]
    n = len(studies)
    if not n:
        return {"n": 0}
    inf = [c.get("infarct", 0.0) for c in studies]
    hem = [c.get("hemorrhage", 0.0) for c in studies]
    return {"n": n, "fp_infarct_ml": sum(inf) / n, "fp_hemorrhage_ml": sum(hem) / n,
            "fp_ml": (sum(inf) + sum(hem)) / n, "n_with_false_infarct": sum(v > 0 for v in inf)}


def row(out: Path) -> dict:
    """The table row from the files the steps wrote."""
    a, b = validation_row(out / "valA"), validation_row(out / "valB")
    real = json.loads((out / "real_up.json").read_text())
    fc = json.loads((out / "familyC.json").read_text())["results"][0]["summary"]
    return {
        "val_A": {"infarct_dice": a[0], "hemorrhage_dice": a[1], "fp_ml_lesion_free": a[2]},
        "val_B": {"infarct_dice": b[0], "hemorrhage_dice": b[1], "fp_ml_lesion_free": b[2]},
        "lesion_free_A": lesion_free_by_class([out / "valA", out / "freeA"]),
        "lesion_free_B": lesion_free_by_class([out / "valB", out / "freeB"]),
        "real_upright": {"mean": real["mean_dice"]["out"], "pooled": real["pooled_dice"]["out"]},
        "family_C": {"hemorrhage_dice": fc["hemorrhage"]["dice"],
                     "subdural_dice": fc["hemorrhage_dice_by_kind"].get("subdural", {}).get("dice"),
                     "false_infarct_ml": fc["infarct"]["fp_ml"],
                     "false_infarct_ml_outside_finding": fc["infarct"]["fp_ml_ign"]},
    }


def judge(cand: dict, default: dict, dice_tol: float = 0.01, fp_tol_ml: float = 0.1) -> list[str]:
    """The model card's selection rule ("The rule, as it stands"), on validation rows only; the
    reasons a candidate may NOT replace the default (empty: it may). Family C is never consulted.

    1. false infarct per lesion-free validation study not higher (by more than fp_tol_ml) on either
       family - a false infarct volume is the worst answer, never traded for less false blood;
    2. false lesion per lesion-free study lower on both families or on their mean;
    3. Dice within dice_tol of the default's or better: both classes on both families, and the real
       slices (upright mean)."""
    why = []
    for fam in ("A", "B"):
        c, d = cand.get(f"lesion_free_{fam}", {}), default.get(f"lesion_free_{fam}", {})
        if not c.get("n") or c.get("n") != d.get("n"):
            why.append(f"family {fam}: the lesion-free validation studies differ or are missing "
                       f"({c.get('n', 0)} against {d.get('n', 0)}): score both the same way")
            continue
        if c["fp_infarct_ml"] > d["fp_infarct_ml"] + fp_tol_ml:
            why.append(f"family {fam}: false infarct {c['fp_infarct_ml']:.2f} > {d['fp_infarct_ml']:.2f} mL per lesion-free study")
    if not why:
        fa, fb = cand["lesion_free_A"]["fp_ml"], cand["lesion_free_B"]["fp_ml"]
        da, db = default["lesion_free_A"]["fp_ml"], default["lesion_free_B"]["fp_ml"]
        if not ((fa < da and fb < db) or (fa + fb < da + db)):
            why.append(f"false lesion not lower: A {fa:.2f} vs {da:.2f}, B {fb:.2f} vs {db:.2f} mL per lesion-free study")
    for fam in ("A", "B"):
        for cls in ("infarct", "hemorrhage"):
            c, d = cand[f"val_{fam}"][f"{cls}_dice"], default[f"val_{fam}"][f"{cls}_dice"]
            if c < d - dice_tol:
                why.append(f"family {fam} {cls} Dice {c:.3f} < {d:.3f} - {dice_tol}")
    c, d = cand["real_upright"]["mean"], default["real_upright"]["mean"]
    if c < d - dice_tol:
        why.append(f"real slices mean Dice {c:.3f} < {d:.3f} - {dice_tol}")
    return why


def markdown(name: str, r: dict) -> str:
    a, b, real, c = r["val_A"], r["val_B"], r["real_upright"], r["family_C"]
    sub = "–" if c["subdural_dice"] is None else f"{c['subdural_dice']:.3f}"
    return (f"| {name} | {a['infarct_dice']:.3f} · {a['hemorrhage_dice']:.3f} | {a['fp_ml_lesion_free']:.2f} "
            f"| {b['infarct_dice']:.3f} · {b['hemorrhage_dice']:.3f} | {b['fp_ml_lesion_free']:.2f} "
            f"| {real['mean']:.3f} / {real['pooled']:.3f} | {c['hemorrhage_dice']:.3f} · {sub} "
            f"| {c['false_infarct_ml']:.2f} ({c['false_infarct_ml_outside_finding']:.2f}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="candidate checkpoint")
    ap.add_argument("--out", required=True, help="folder for every step's output")
    ap.add_argument("--skip-filter", action="store_true",
                    help="score the checkpoint's own lesion filter instead of choosing one")
    ap.add_argument("--val", default="data/valA,data/valA_none,data/valB,data/valB_none",
                    help="validation folders for the filter choice (families A and B)")
    ap.add_argument("--val-a", default="data/val_setA", help="family-A validation set (sdpm evaluate)")
    ap.add_argument("--val-b", default="data/val_setB", help="family-B validation set (sdpm evaluate)")
    ap.add_argument("--family-c", default="data/test_setC", help="family C (real_insert.py), test only")
    ap.add_argument("--free-a", default="data/val_freeA", help="more lesion-free family-A validation studies")
    ap.add_argument("--free-b", default="data/val_freeB", help="more lesion-free family-B validation studies")
    ap.add_argument("--against", default=None, help="the default's row.json: judge the candidate by the card's rule")
    ap.add_argument("--redo", action="store_true", help="rerun steps whose output exists")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    todo = lambda p: args.redo or not p.exists()  # noqa: E731
    model = Path(args.model) if args.skip_filter else out / "f.pt"
    if not args.skip_filter and todo(model):
        _run([py, str(HERE / "postprocess.py"), "--model", args.model, "--data", args.val,
              "--mode", "out", "--min-peak-prob", "0", "--min-mirror-contrast", "hemorrhage:none,0,2.5",
              "--out", str(out / "pp.json"), "--write", str(model)], out / "pp.log")
    for name, data in (("valA", args.val_a), ("valB", args.val_b)):
        if todo(out / name / "summary.json"):
            _run(["sdpm", "evaluate", "--data", data, "--model", str(model), "--modes", "out",
                  "--out", str(out / name), "--force"], out / f"{name}.log")
    for name, extra in (("real", []), ("real_up", ["--quarter-turns", "1"])):
        if todo(out / f"{name}.json"):
            _run([py, str(HERE / "real_slices.py"), "--model", str(model), *extra,
                  "--out", str(out / f"{name}.json")], out / f"{name}.log")
    if todo(out / "familyC.json"):
        _run([py, str(HERE / "familyC_score.py"), "--data", args.family_c, "--model", str(model),
              "--out", str(out / "familyC.json")], out / "familyC.log")
    for name, data in (("freeA", args.free_a), ("freeB", args.free_b)):
        if Path(data).is_dir() and todo(out / name / "summary.json"):
            _run(["sdpm", "evaluate", "--data", data, "--model", str(model), "--modes", "out",
                  "--out", str(out / name), "--force"], out / f"{name}.log", partial_ok=True)
    r = row(out)
    (out / "row.json").write_text(json.dumps(r, indent=2))
    print(markdown(Path(args.model).stem, r))
    for fam in ("A", "B"):
        f = r[f"lesion_free_{fam}"]
        if f.get("n"):
            print(f"family {fam}, {f['n']} lesion-free validation studies: false infarct {f['fp_infarct_ml']:.2f}, "
                  f"false hemorrhage {f['fp_hemorrhage_ml']:.2f} mL per study; false infarct on {f['n_with_false_infarct']}")
    if args.against:
        why = judge(r, json.loads(Path(args.against).read_text()))
        print("by the card's rule: " + ("may replace the default" if not why else "stays a candidate - " + "; ".join(why)))


if __name__ == "__main__":
    main()
