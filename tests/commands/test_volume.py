"""`sdpm volume` end to end: hand-computed volumes, machine-readable output, exit codes, atomic --out."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import SimpleITK as sitk

SPACING = (0.6, 0.8, 5.0)
VOX_ML = 0.6 * 0.8 * 5.0 / 1000


def write_mask(path, arr, direction=(0, 1, 0, 1, 0, 0, 0, 0, -1), origin=(12.0, -30.0, 80.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    img.SetDirection(direction)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def mask(tmp_path):
    a = np.zeros((5, 30, 40), np.uint8)
    a[1:4, 5:10, 5:9] = 1  # 3 x 5 x 4 = 60 voxels
    a[2, 20:22, 30:33] = 1  # 6 voxels, a second infarct
    a[4, 15:18, 15:18] = 2  # 9 voxels of hemorrhage
    return write_mask(tmp_path / "mask.nii.gz", a)


def test_json_volumes_and_centroid(run_cli, mask):
    code, stdout, _ = run_cli("volume", mask, "--json")
    assert code == 0
    rep = json.loads(stdout)
    vols = {v["label"]: v["volume_ml"] for v in rep["labels"]}
    assert vols[1] == pytest.approx(66 * VOX_ML, rel=1e-6) and vols[2] == pytest.approx(9 * VOX_ML, rel=1e-6)
    assert [(les["label"], les["id"], les["n_voxels"]) for les in rep["lesions"]] == [(1, 1, 60), (1, 2, 6), (2, 1, 9)]
    big = rep["lesions"][0]
    # index centroid (x 6.5, y 7, z 2); NIfTI stores RAS, SimpleITK gives it back as LPS unchanged
    D = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], float)
    expect = np.array([12.0, -30.0, 80.0]) + D @ (np.array(SPACING) * [6.5, 7.0, 2.0])
    np.testing.assert_allclose(big["centroid_mm"], expect, atol=1e-3)
    assert big["slices"] == [1, 3] and big["bbox_index"] == [[5, 5, 1], [8, 9, 3]]
    assert rep["connectivity"] == 26


def test_default_table_and_csv(run_cli, mask):
    code, stdout, _ = run_cli("volume", mask)
    assert code == 0 and "infarct" in stdout and "hemorrhage" in stdout and f"{66 * VOX_ML:.3f}" in stdout
    code, stdout, _ = run_cli("volume", mask, "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [r["kind"] for r in rows] == ["label", "label", "lesion", "lesion", "lesion"]
    assert float(rows[1]["volume_ml"]) == pytest.approx(9 * VOX_ML, rel=1e-4)


def test_empty_mask_is_zero_ml(run_cli, tmp_path):
    m = write_mask(tmp_path / "empty.nii.gz", np.zeros((3, 8, 8), np.uint8))
    code, stdout, _ = run_cli("volume", m, "--json")
    assert code == 0
    rep = json.loads(stdout)
    assert [v["volume_ml"] for v in rep["labels"]] == [0.0, 0.0] and rep["lesions"] == []


def test_float_mask_is_refused(run_cli, tmp_path):
    a = np.zeros((3, 8, 8), np.float32)
    a[1, 2, 2] = 0.7
    m = write_mask(tmp_path / "prob.nii.gz", a)
    code, stdout, stderr = run_cli("volume", m)
    assert code == 3
    assert "mask is not a label image (non-integer values)" in stderr and "Traceback" not in stderr + stdout
    a[1, 2, 2] = 1.0
    m = write_mask(tmp_path / "float_labels.nii.gz", a)
    code, stdout, stderr = run_cli("volume", m, "--json")
    assert code == 0 and "whole-number values" in stderr
    assert json.loads(stdout)["labels"][0]["n_voxels"] == 1


def test_unreadable_and_bad_usage(run_cli, tmp_path, mask):
    bad = tmp_path / "junk.nii.gz"
    bad.write_text("not an image")
    code, _, stderr = run_cli("volume", bad)
    assert code == 3 and "cannot read junk.nii.gz" in stderr
    code, _, _ = run_cli("volume", tmp_path / "missing.nii.gz")
    assert code == 2
    code, _, stderr = run_cli("volume", mask, "--json", "--csv")
    assert code == 2 and "one of --json and --csv" in stderr
    code, _, stderr = run_cli("volume", mask, "--out", tmp_path / "r.txt")
    assert code == 2 and ".json or .csv" in stderr


def test_out_file_is_atomic_and_respects_force(run_cli, tmp_path, mask):
    dest = tmp_path / "vol.json"
    code, _, _ = run_cli("volume", mask, "--out", dest)
    assert code == 0 and json.loads(dest.read_text())["labels"][0]["n_voxels"] == 66
    dest.write_text("keep me")
    code, _, stderr = run_cli("volume", mask, "--out", dest)
    assert code == 2 and "--force" in stderr and dest.read_text() == "keep me"
    code, _, _ = run_cli("volume", mask, "--out", dest, "--force")
    assert code == 0 and json.loads(dest.read_text())["lesions"][0]["n_voxels"] == 60
    dest_csv = tmp_path / "vol.csv"
    code, _, _ = run_cli("volume", mask, "--out", dest_csv, "--json")
    assert code == 0 and dest_csv.read_text().startswith("kind,label,name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz", "vol.csv", "vol.json"]  # no temp files left
    # a refused mask writes nothing
    a = np.zeros((2, 4, 4), np.float32)
    a[0, 0, 0] = 0.5
    m = write_mask(tmp_path / "p.nii.gz", a)
    code, _, _ = run_cli("volume", m, "--out", tmp_path / "never.json")
    assert code == 3 and not (tmp_path / "never.json").exists()
