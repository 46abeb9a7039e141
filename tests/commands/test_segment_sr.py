"""`sdpm segment --dicom-seg --dicom-sr`: the SR carries the report's numbers, references the SEG and
the source series, and passes dciodvfy (where dicom3tools is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pydicom
import pytest

from sdpm_cli.synth import SynthConfig, generate_case
from sdpm_cli.synth.writers import write_dicom_series


@pytest.fixture(scope="module")
def dicom_study(tmp_path_factory):
    case = generate_case(5, SynthConfig(matrix=128, thicknesses_mm=(5.0,), thickness_weights=(1.0,), lesion="hemorrhage"))
    folder = tmp_path_factory.mktemp("dicom") / "study"
    write_dicom_series(case.image, case.meta, folder)
    return folder


def test_segment_writes_an_sr_with_the_reports_numbers(run_cli, tiny_model, dicom_study, tmp_path):
    from sdpm_cli.outputs.dicomsr import read_dicom_sr

    out = {k: tmp_path / n for k, n in (("mask", "m.nii.gz"), ("report", "r.json"), ("seg", "seg.dcm"), ("sr", "sr.dcm"))}
    code, _, err = run_cli("segment", dicom_study, "--model", tiny_model, "--mode", "out", "--out", out["mask"],
                           "--report", out["report"], "--dicom-seg", out["seg"], "--dicom-sr", out["sr"], "--no-lesion-filter")
    assert code == 0, err
    report = json.loads(out["report"].read_text())
    sr = read_dicom_sr(out["sr"])
    seg = pydicom.dcmread(out["seg"])
    src = pydicom.dcmread(next(dicom_study.iterdir()), stop_before_pixels=True)
    assert sr["study_instance_uid"] == src.StudyInstanceUID == seg.StudyInstanceUID
    evidence = json.dumps(sr["evidence"])
    assert seg.SOPInstanceUID in evidence and src.SeriesInstanceUID in evidence
    for name, v in report["volumes"].items():
        assert sr["volumes"][name]["volume_ml"] == pytest.approx(v["volume_ml"], abs=1e-6)
    assert len(sr["lesions"]) == len(report["lesions"])
    if shutil.which("dciodvfy"):
        for f in (out["sr"], out["seg"]):
            res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, check=False)
            errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
            assert errors == [], errors


def test_dicom_sr_needs_dicom_seg_and_a_dicom_study(run_cli, tiny_model, dicom_study, studies, tmp_path):
    code, _, err = run_cli("segment", dicom_study, "--model", tiny_model, "--out", tmp_path / "m.nii.gz",
                           "--dicom-sr", tmp_path / "sr.dcm")
    assert code == 2 and "--dicom-sr needs --dicom-seg" in err
    code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--out", tmp_path / "m.nii.gz",
                           "--dicom-seg", tmp_path / "s.dcm", "--dicom-sr", tmp_path / "sr.dcm")
    assert code == 2 and "needs a DICOM input study" in err
    assert not list(tmp_path.iterdir())
