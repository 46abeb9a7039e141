"""`sdpm series`, `sdpm convert` and `sdpm qc`: exit codes, one-line refusals, no partial output, no PHI."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from .dicom_factory import SeriesSpec, write_series

PHI = ("Phantom", "SDPM-TEST-001", "ACC-SECRET", "Secret Hospital", "19500101")


def _no_phi(*texts):
    for t in texts:
        for word in PHI:
            assert word not in t, word


def test_series_table_marks_chosen_and_reasons(tmp_path, run_cli):
    soft = SeriesSpec(series_number=2, kernel="H30s")
    write_series(tmp_path, soft)
    write_series(tmp_path, SeriesSpec(series_number=3, kernel="H70h"))
    code, out, err = run_cli("series", tmp_path)
    assert code == 0, err
    chosen = [line for line in out.splitlines() if line.startswith("*")]
    assert len(chosen) == 1 and soft.series_uid in chosen[0]
    assert "bone/sharp kernel (H70h)" in out and "ignored: nothing" in out
    code, out, _ = run_cli("series", tmp_path, "--json")
    data = json.loads(out)
    assert code == 0 and data["chosen"] == soft.series_uid and len(data["series"]) == 2
    _no_phi(out, err)


def test_convert_writes_int16_hu_with_source_geometry(tmp_path, run_cli):
    write_series(tmp_path / "dcm", iop=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0), contrast="IOHEXOL")
    dest = tmp_path / "ct.nii.gz"
    code, out, err = run_cli("convert", tmp_path / "dcm", "--out", dest)
    assert code == 0, err
    img = sitk.ReadImage(str(dest))
    assert img.GetPixelID() == sitk.sitkInt16 and img.GetSize() == (56, 40, 24)
    np.testing.assert_allclose(img.GetSpacing(), (4.0, 5.5, 5.0), atol=1e-6)
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3)[:, 0], (-1, 0, 0), atol=1e-6)
    assert "HEAD 5mm" in out and "contrast agent recorded" in err
    _no_phi(out, err)
    # no overwrite without --force
    code, _, err = run_cli("convert", tmp_path / "dcm", "--out", dest)
    assert code == 2 and "exists" in err


def test_refusals_are_one_line_exit_3_and_leave_no_file(tmp_path, run_cli):
    write_series(tmp_path / "dcm", tilt_deg=20.0)
    dest = tmp_path / "out" / "ct.nii.gz"
    code, out, err = run_cli("convert", tmp_path / "dcm", "--out", dest)
    assert code == 3
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "tilt of 20.0 degrees" in lines[0]
    assert "Traceback" not in err and not dest.exists()
    assert not dest.parent.exists() or not any(dest.parent.iterdir())
    code, out, err = run_cli("convert", tmp_path / "dcm", "--out", dest, "--correct-tilt")
    assert code == 0 and dest.exists() and "tilt" in err
    code, _, err = run_cli("convert", tmp_path / "empty_missing", "--out", tmp_path / "x.nii.gz")
    assert code == 3 and "no such file" in err and not (tmp_path / "x.nii.gz").exists()


def test_qc_json_verdicts(tmp_path, run_cli):
    write_series(tmp_path / "ok")
    code, out, err = run_cli("qc", tmp_path / "ok", "--json")
    v = json.loads(out)
    assert code == 0 and v["verdict"] == "pass" and v["modality"] == "CT"
    assert v["slice_thickness_mm"] == 5.0 and v["coverage_mm"] == 120.0 and v["n_slices"] == 24 and v["tilt_deg"] == 0.0
    assert v["hu"]["passed"] and v["hu"]["air_hu"] == -1000.0 and 0 <= v["hu"]["soft_tissue_peak_hu"] <= 80
    assert v["spacing_mm"] == [4.0, 5.5, 5.0]
    write_series(tmp_path / "bad", hu_offset=300.0)
    code, out, err = run_cli("qc", tmp_path / "bad", "--json")
    v = json.loads(out)
    assert code == 3 and v["verdict"] == "reject" and "HU check failed" in v["reasons"][0]
    assert v["series"]["description"] == "HEAD 5mm" and v["n_slices"] == 24
    _no_phi(out, err)
    code, out, err = run_cli("qc", tmp_path / "bad")
    assert code == 3 and "verdict: reject" in out


def test_unknown_series_is_a_usage_error(tmp_path, run_cli):
    write_series(tmp_path)
    code, _, err = run_cli("convert", tmp_path, "--series", "1.2.3.999", "--out", tmp_path / "x.nii.gz")
    assert code == 2 and "not in" in err
