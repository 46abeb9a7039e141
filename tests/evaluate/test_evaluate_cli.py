"""`sdpm evaluate` end to end on tiny label files built here (folders and dataset forms)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected

SPACING = (0.5, 0.5, 4.0)  # 1 mm^3 per voxel: volumes in mL = voxels / 1000
ORIGIN = (-10.0, 20.0, 5.0)
SHAPE = (6, 16, 16)
OUTS = ("per_case.csv", "summary.json", "table1.md", "volume_scatter.png", "bland_altman.png")


def img(arr: np.ndarray, spacing=SPACING, origin=ORIGIN) -> sitk.Image:
    im = sitk.GetImageFromArray(arr.astype(np.uint8))
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    return im


def lab(boxes) -> np.ndarray:
    a = np.zeros(SHAPE, np.uint8)
    for value, (z0, z1, y0, y1, x0, x1) in boxes:
        a[z0:z1, y0:y1, x0:x1] = value
    return a


# truth / prediction per case: (label boxes) ; volumes in voxels noted
TRUTH = {
    "case_0001": lab([(1, (1, 3, 2, 6, 2, 6))]),  # infarct 32
    "case_0002": lab([(1, (2, 4, 4, 8, 4, 10)), (2, (1, 2, 10, 12, 10, 12))]),  # infarct 48, hem 4
    "case_0003": lab([]),  # lesion-free
}
PRED = {
    "case_0001": lab([(1, (1, 3, 2, 6, 2, 6))]),  # perfect
    "case_0002": lab([(1, (2, 4, 4, 8, 4, 7))]),  # infarct 24 inside truth; hemorrhage missed
    "case_0003": lab([(2, (3, 4, 0, 2, 0, 2))]),  # false-positive hemorrhage 4
}


def write_folder(folder: Path, cases: dict, suffix: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in cases.items():
        sitk.WriteImage(img(arr), str(folder / f"{name}{suffix}.nii.gz"))
    return folder


@pytest.fixture
def folders(tmp_path):
    return write_folder(tmp_path / "pred", PRED), write_folder(tmp_path / "truth", TRUTH)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_folders_writes_all_outputs_with_hand_values(run_cli, folders, tmp_path):
    pred, truth = folders
    out = tmp_path / "eval"
    code, stdout, stderr = run_cli("evaluate", pred, truth, "--out", out, "--name", "mine")
    assert code == 0, stderr
    for name in OUTS:
        assert (out / name).stat().st_size > 0
    for png in OUTS[3:]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {(r["case"], r["lesion_class"]): r for r in read_csv(out / "per_case.csv")}
    assert float(rows[("case_0001", "infarct")]["dice"]) == pytest.approx(1.0)
    assert float(rows[("case_0002", "infarct")]["dice"]) == pytest.approx(2 * 24 / 72)
    assert float(rows[("case_0002", "infarct")]["vol_truth_ml"]) == pytest.approx(0.048)
    assert float(rows[("case_0002", "hemorrhage")]["dice"]) == 0.0
    assert rows[("case_0002", "hemorrhage")]["hd95_mm"] == ""  # undefined: prediction empty
    assert float(rows[("case_0003", "infarct")]["dice"]) == 1.0  # both empty
    s = json.loads((out / "summary.json").read_text())
    inf = s["modes"]["mine"]["infarct"]
    assert inf["vdp_percent"] == pytest.approx((0 + 100 * 24 / 48) / 2)
    assert inf["vc_pearson"] == pytest.approx(np.corrcoef([0.032, 0.024, 0], [0.032, 0.048, 0])[0, 1])
    hem = s["modes"]["mine"]["hemorrhage"]
    assert hem["lesion_sensitivity"] == 0.0 and hem["lesions_true"] == 1 and hem["lesions_fp"] == 1
    assert hem["fp_volume_ml_mean_lesion_free"] == pytest.approx((0.0 + 0.004) / 2)
    assert s["failures"] == []
    table = (out / "table1.md").read_text()
    assert "| Method | Infarct Dice | Infarct VC | Infarct VDP | Hemorrhage Dice | Hemorrhage VC | Hemorrhage VDP |" in table
    assert "| mine | 0.889 |" in table  # (1 + 2/3 + 1) / 3
    assert "Infarct Dice" in stdout


def test_missing_prediction_is_a_reported_failure(run_cli, folders, tmp_path):
    pred, truth = folders
    (pred / "case_0002.nii.gz").unlink()
    out = tmp_path / "eval"
    code, _, stderr = run_cli("evaluate", pred, truth, "--out", out)
    assert code == 6
    assert "case_0002" in stderr and "not scored" in stderr
    rows = [r for r in read_csv(out / "per_case.csv") if r["case"] == "case_0002"]
    assert {r["status"] for r in rows} == {"missing"}
    s = json.loads((out / "summary.json").read_text())
    assert [f["case"] for f in s["failures"]] == ["case_0002"]
    assert s["modes"]["pred"]["infarct"]["n_failed"] == 1


def test_geometry_mismatch_is_refused_naming_the_case(run_cli, folders, tmp_path):
    pred, truth = folders
    sitk.WriteImage(img(PRED["case_0003"], origin=(0.0, 0.0, 0.0)), str(pred / "case_0003.nii.gz"))
    out = tmp_path / "eval"
    code, _, stderr = run_cli("evaluate", pred, truth, "--out", out)
    assert code == 3
    assert "case_0003" in stderr and "origin" in stderr
    assert not out.exists() or not any(out.iterdir())


def test_bad_label_values_refused(run_cli, folders, tmp_path):
    pred, truth = folders
    bad = PRED["case_0001"].copy()
    bad[0, 0, 0] = 7
    sitk.WriteImage(img(bad), str(pred / "case_0001.nii.gz"))
    code, _, stderr = run_cli("evaluate", pred, truth, "--out", tmp_path / "eval")
    assert code == 3 and "case_0001" in stderr and "7" in stderr


def test_no_overwrite_without_force(run_cli, folders, tmp_path):
    pred, truth = folders
    out = tmp_path / "eval"
    out.mkdir()
    (out / "summary.json").write_text("keep me")
    code, _, stderr = run_cli("evaluate", pred, truth, "--out", out)
    assert code == 2 and "--force" in stderr
    assert (out / "summary.json").read_text() == "keep me"
    assert not (out / "per_case.csv").exists()
    code, _, _ = run_cli("evaluate", pred, truth, "--out", out, "--force")
    assert code == 0 and json.loads((out / "summary.json").read_text())["n_cases"] == 3


@pytest.mark.parametrize(
    "args",
    [
        ("evaluate", "--out", "x"),  # nothing to evaluate
        ("evaluate", "a", "b", "--data", "d", "--out", "x"),  # both forms
        ("evaluate", "--data", "d", "--modes", "out,bogus", "--out", "x"),
    ],
)
def test_usage_errors(run_cli, tmp_path, args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(*args)
    assert code == 2 and stderr.startswith("error:")


# ---- dataset form: the engine's pipeline is replaced by a stand-in that returns known masks --------------


class FakePipeline:
    """Returns the truth as `out`, nothing as `salient`, a half lesion as `infer`; union = out."""

    def __init__(self, fail_case: str | None = None):
        self.calls: list[tuple[str, str]] = []
        self.fail_case = fail_case

    def load_model(self, model, device, graphs=False):
        return SimpleNamespace(name="fake", sha256="0" * 64, device="cpu"), []

    def segment_study(self, path, *, model, options, progress=None):
        mode = options.mode
        self.calls.append((Path(path).name, mode))
        if self.fail_case and self.fail_case in str(path):
            raise InputRejected("no axial CT series in the study")
        case = Path(path).name.replace("_0000.nii.gz", "")
        truth = sitk.ReadImage(str(Path(path).parent.parent / "labelsTs" / f"{case}.nii.gz"))
        t = sitk.GetArrayFromImage(truth)
        half = t.copy()
        half[:, :, : SHAPE[2] // 2] = 0
        by_mode = {"out": t, "salient": np.zeros_like(t), "infer": half, "union": t}
        run = ("out", "salient", "infer", "union") if mode == "union" else (mode,)
        labels = {m: img(by_mode[m]) for m in run}
        return SimpleNamespace(labels_by_mode=labels, labels=labels[mode], warnings=[])


@pytest.fixture
def nnunet(tmp_path):
    root = tmp_path / "Dataset001"
    write_folder(root / "imagesTs", {k: np.zeros(SHAPE) for k in TRUTH}, suffix="_0000")
    write_folder(root / "labelsTs", TRUTH)
    return root


def test_dataset_modes_scored_from_one_union_run(run_cli, nnunet, tmp_path, monkeypatch):
    from sdpm_cli import engine

    fake = FakePipeline()
    monkeypatch.setattr(engine, "load_model", fake.load_model)
    monkeypatch.setattr(engine, "segment_study", fake.segment_study)
    out = tmp_path / "eval"
    code, stdout, stderr = run_cli("evaluate", "--data", nnunet, "--modes", "out,salient,infer", "--out", out)
    assert code == 0, stderr
    assert fake.calls == [(f"{c}_0000.nii.gz", "union") for c in sorted(TRUTH)]
    s = json.loads((out / "summary.json").read_text())
    assert list(s["modes"]) == ["out", "salient", "infer"]
    assert s["modes"]["out"]["infarct"]["dice_mean"] == 1.0
    # salient predicts nothing: Dice 0 on the two lesion cases, 1 on the lesion-free one
    assert s["modes"]["salient"]["infarct"]["dice_mean"] == pytest.approx(1 / 3)
    assert s["modes"]["salient"]["infarct"]["lesion_sensitivity"] == 0.0
    assert s["source"]["model"]["name"] == "fake" and s["source"]["split"] == "test"
    table = (out / "table1.md").read_text()
    assert table.index("| out |") < table.index("| salient |") < table.index("| infer |")


def test_dataset_single_mode_and_csv_and_failed_case(run_cli, nnunet, tmp_path, monkeypatch):
    from sdpm_cli import engine

    fake = FakePipeline(fail_case="case_0002")
    monkeypatch.setattr(engine, "load_model", fake.load_model)
    monkeypatch.setattr(engine, "segment_study", fake.segment_study)
    listing = nnunet / "pairs.csv"
    listing.write_text(
        "image,label\n" + "".join(f"imagesTs/{c}_0000.nii.gz,labelsTs/{c}.nii.gz\n" for c in sorted(TRUTH))
    )
    out = tmp_path / "eval"
    code, _, stderr = run_cli("evaluate", "--data", listing, "--modes", "out", "--out", out)
    assert code == 6
    assert "case_0002" in stderr and "no axial CT series" in stderr
    assert {m for _, m in fake.calls} == {"out"}
    s = json.loads((out / "summary.json").read_text())
    assert s["modes"]["out"]["infarct"]["n_cases"] == 2 and s["modes"]["out"]["infarct"]["n_failed"] == 1


def test_dataset_layout_errors(run_cli, nnunet, tmp_path):
    code, _, stderr = run_cli("evaluate", "--data", nnunet, "--split", "train", "--out", tmp_path / "e")
    assert code == 3 and "imagesTr" in stderr
    (nnunet / "labelsTs" / "case_0003.nii.gz").unlink()
    code, _, stderr = run_cli("evaluate", "--data", nnunet, "--out", tmp_path / "e")
    assert code == 3 and "case_0003" in stderr
