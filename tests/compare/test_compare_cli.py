"""`sdpm compare` end to end with the tiny random model (flow, files, refusals and exit codes)."""

from __future__ import annotations

import csv
import json

import numpy as np
import SimpleITK as sitk

from sdpm_cli.compare.report import COMPARE_SCHEMA
from sdpm_cli.outputs.report import schema_errors


def test_dicom_pair_writes_json_csv_preview(run_cli, tiny_model, dicom_pairs, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli("compare", dicom_pairs["baseline"], dicom_pairs["followup"], "--model", tiny_model,
                                "--out-dir", out, "--seed", 1)
    assert code == 0, err
    doc = json.loads((out / "compare.json").read_text())
    assert schema_errors(doc, COMPARE_SCHEMA) == []
    assert doc["same_patient"]["checked"] and doc["same_patient"]["same"]
    assert doc["registration"]["passed"] and doc["model"]["name"] == "tiny-test"
    assert set(doc["classes"]) == {"infarct", "hemorrhage"}
    for e in doc["classes"].values():  # the change is the difference of the two native volumes
        assert abs(e["change_ml"] - (e["followup_ml"] - e["baseline_ml"])) < 1e-3
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "compare.csv").read_text().startswith("scope,class")
    assert stdout.startswith("registration:") and "hemorrhage:" in stdout
    assert "SYNTH" not in stdout + err + (out / "compare.json").read_text()  # no patient identifiers
    # existing outputs are kept without --force
    code, _, err = run_cli("compare", dicom_pairs["baseline"], dicom_pairs["followup"], "--model", tiny_model,
                           "--json", out / "compare.json")
    assert code == 2 and "--force" in err


def test_different_patients_are_refused_with_exit_3(run_cli, tiny_model, dicom_pairs, tmp_path):
    dest = tmp_path / "c.json"
    code, _, err = run_cli("compare", dicom_pairs["baseline"], dicom_pairs["other_patient"], "--model", tiny_model,
                           "--json", dest)
    assert code == 3 and "different patients" in err and "Traceback" not in err and not dest.exists()
    assert len(err.strip().splitlines()) <= 2  # a progress note and the one-line error


def test_non_head_is_refused_with_exit_3(run_cli, tiny_model, grown_pair, tmp_path):
    # a water cylinder in air: CT-like HU, no skull, no brain
    size = grown_pair.baseline.GetSize()
    z, y, x = np.mgrid[0:size[2], 0:size[1], 0:size[0]]
    arr = np.where((y - size[1] / 2) ** 2 + (x - size[0] / 2) ** 2 < (size[0] / 3) ** 2, 0, -1000).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(grown_pair.baseline)
    phantom, base = tmp_path / "cylinder.nii.gz", tmp_path / "base.nii.gz"
    sitk.WriteImage(img, str(phantom))
    sitk.WriteImage(grown_pair.baseline, str(base))
    code, _, err = run_cli("compare", base, phantom, "--model", tiny_model, "--json", tmp_path / "c.json")
    assert code == 3 and "Traceback" not in err and not (tmp_path / "c.json").exists()


def test_batch_one_row_per_pair_and_partial_exit(run_cli, tiny_model, grown_pair, stable_pair, tmp_path):
    for name, img in (("b.nii.gz", grown_pair.baseline), ("f1.nii.gz", grown_pair.followup),
                      ("f2.nii.gz", stable_pair.followup)):
        sitk.WriteImage(img, str(tmp_path / name))
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("name,baseline,followup\ngrown,b.nii.gz,f1.nii.gz\nstable,b.nii.gz,f2.nii.gz\nbad,b.nii.gz,broken.nii.gz\n")
    out = tmp_path / "out"
    code, _, err = run_cli("compare", "--pairs", pairs, "--out-dir", out, "--model", tiny_model, "--csv", "c.csv")
    assert code == 6, err
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["pair"] for r in rows] == ["grown", "stable", "bad"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"] and rows[2]["exit_code"] == "3"
    assert float(rows[0]["brain_dice"]) > 0.85
    for name in ("grown", "stable"):
        doc = json.loads((out / name / "compare.json").read_text())
        assert doc["same_patient"]["checked"] is False  # NIfTI: no header, skipped with a note
        assert (out / name / "c.csv").exists()
    assert not (out / "bad").exists()
