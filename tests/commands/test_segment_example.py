"""README's main job, end to end: the shipped default model on the shipped example study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.model.registry import default_model_path

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "examples" / "demo_study"
TRUTH = REPO / "examples" / "demo_truth.nii.gz"


@pytest.mark.slow
def test_default_model_finds_the_demo_hemorrhage(run_cli, tmp_path):
    if default_model_path() is None:
        pytest.fail("the default model is not installed")
    mask, report = tmp_path / "demo_mask.nii.gz", tmp_path / "report.json"
    code, out, err = run_cli("segment", STUDY, "--mode", "out", "--out", mask, "--report", report, "--quiet")
    assert code == 0, err
    pred = sitk.ReadImage(str(mask))
    truth = sitk.ReadImage(str(TRUTH))
    # same grid as the source series, voxel for voxel
    assert pred.GetSize() == truth.GetSize()
    assert np.allclose(pred.GetOrigin(), truth.GetOrigin(), atol=1e-3)
    assert np.allclose(pred.GetDirection(), truth.GetDirection(), atol=1e-6)
    p, t = sitk.GetArrayFromImage(pred) == 2, sitk.GetArrayFromImage(truth) == 2
    dice = 2 * np.count_nonzero(p & t) / (np.count_nonzero(p) + np.count_nonzero(t))
    assert dice > 0.8, dice
    rep = json.loads(report.read_text())
    true_ml = np.count_nonzero(t) * np.prod(truth.GetSpacing()) / 1000
    assert rep["volumes"]["hemorrhage"]["volume_ml"] == pytest.approx(true_ml, rel=0.15)
    assert rep["model"]["sha256"]
    # the model's own lesion filter is applied by default and reported
    from sdpm_cli.model.checkpoint import read_header

    shipped = read_header(default_model_path())["postprocess"]["lesion_filter"]
    assert rep["run"]["lesion_filter"] == shipped and shipped["infarct"]["min_extent_mm"] > 0
    assert "hemorrhage:" in out
