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
    # the shipped model is a research model: --quiet or not, the run says so, and so does its report
    assert rep["model"]["intended_use"] == "research"
    assert "not for clinical decisions" in rep["model"]["caveat"]
    assert f"warning: model sdpm-default: {rep['model']['caveat']}" in " ".join(err.split())


@pytest.mark.slow
def test_interval_widens_when_the_input_is_noisier():
    """The same calibrated error model, a much noisier copy of the demo (sigma 60 HU): the network is less sure of its
    voxels (more of them in the uncertain band), so the interval of the true volume widens."""
    from sdpm_cli.ingest import load_study
    from sdpm_cli.pipeline import load_model, segment_study

    lm, _ = load_model(None, "cpu")
    study = load_study(STUDY)
    clean = segment_study(study, model=lm, mode="out", seed=0)
    arr = sitk.GetArrayFromImage(study.image).astype(np.float32)
    noisy_arr = arr + np.random.default_rng(0).normal(0.0, 60.0, arr.shape).astype(np.float32)
    noisy_img = sitk.GetImageFromArray(noisy_arr)
    noisy_img.CopyInformation(study.image)
    study.image = noisy_img
    noisy = segment_study(study, model=lm, mode="out", seed=0)
    a, b = clean.volumes["hemorrhage"], noisy.volumes["hemorrhage"]
    assert b.band_ml > 1.3 * a.band_ml, (a.band_ml, b.band_ml)  # measured 3.8 -> 6.4 mL
    if a.ci95_ml is not None:  # the shipped model carries a calibration for `out`
        assert a.ci95_ml[0] <= a.volume_ml <= a.ci95_ml[1] and b.ci95_ml[0] <= b.volume_ml <= b.ci95_ml[1]
        assert (b.ci95_ml[1] - b.ci95_ml[0]) > (a.ci95_ml[1] - a.ci95_ml[0])


@pytest.mark.slow
@pytest.mark.fixtures
def test_real_head_infarct_in_an_old_looking_hypodensity_is_flagged(run_cli, tmp_path, dcm_qa_ct):
    """The shipped model calls the real GE head's old-looking hypodensity infarct; the user is told
    (postprocess.darkness), on the console and in the report, and the volume is left as measured."""
    mask, report = tmp_path / "ge.nii.gz", tmp_path / "ge.json"
    code, out, err = run_cli("segment", dcm_qa_ct / "GE", "--correct-tilt", "--resample-gaps", "--out", mask,
                             "--report", report, "--quiet")
    assert code == 0, err
    rep = json.loads(report.read_text())
    dark = [w for w in rep["warnings"] if "as dark as CSF" in w]
    assert len(dark) == 1 and "cannot tell old from acute" in dark[0], rep["warnings"]
    assert "as dark as CSF" in " ".join(err.split())
    assert rep["volumes"]["infarct"]["volume_ml"] > 5  # warned, not removed
    (d,) = rep["dark_infarcts"]
    assert d["asymmetric_csf_dark_share"] >= 0.15 and d["volume_ml"] <= rep["volumes"]["infarct"]["volume_ml"] + 0.01
