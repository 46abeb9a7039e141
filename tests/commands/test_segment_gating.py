"""Gating the stochastic modes: which slices are gated in, and that a gated-in slice gets the ungated
run's answer while a gated-out slice gets `out`'s."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import sdpm_cli.pipeline as pipeline
from sdpm_cli.pipeline import gate_slices, segment_study


def test_gate_slices_needs_an_area_and_adds_a_margin():
    p = np.zeros((2, 10, 8, 8), np.float32)
    p[0, 2, :2, :2] = 0.9  # 4 pixels: below an area of 5
    p[1, 6, :3, :3] = 0.3  # 9 pixels at 0.3, class 2
    p[0, 8, 0, 0] = 0.19  # below the threshold
    assert gate_slices(p, range(10), 0.2, 5, 1) == [5, 6, 7]
    assert gate_slices(p, range(10), 0.2, 4, 0) == [2, 6]
    assert gate_slices(p, [6, 7], 0.2, 5, 1) == [6, 7]  # never outside the brain slices
    assert gate_slices(np.zeros_like(p), range(10), 0.2, 1, 2) == []


def test_a_margin_slice_is_run_only_where_out_is_raised_there():
    p = np.zeros((2, 10, 8, 8), np.float32)
    p[0, 5, :3, :3] = 0.9  # the lesion's slice (9 pixels)
    p[1, 4, :3, :3] = 0.35  # below it: 9 pixels raised to 0.35 (class 2)
    p[0, 6, :2, :2] = 0.35  # above it: only 4 pixels raised
    p[0, 8, :3, :3] = 0.35  # raised but two slices away: outside the margin
    assert gate_slices(p, range(10), 0.5, 5, 1) == [4, 5, 6]  # every margin slice (margin_threshold 0)
    assert gate_slices(p, range(10), 0.5, 5, 1, 0.3) == [4, 5]
    assert gate_slices(p, range(10), 0.5, 5, 1, 0.4) == [5]
    assert gate_slices(p, range(10), 0.5, 5, 2, 0.3) == [4, 5]  # slice 7 holds nothing
    assert gate_slices(p, range(10), 0.5, 5, 3, 0.3) == [4, 5, 8]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from sdpm_cli.ingest import load_study
    from sdpm_cli.synth import SynthConfig, generate_case

    case = generate_case(5, SynthConfig(matrix=128, thicknesses_mm=(5.0,), thickness_weights=(1.0,), lesion="hemorrhage"))
    p = tmp_path_factory.mktemp("gate") / "s.nii.gz"
    sitk.WriteImage(case.image, str(p))
    return load_study(p)


def test_gated_in_slices_match_the_ungated_run_and_gated_out_ones_take_out(tiny_model, study, monkeypatch):
    from sdpm_cli.pipeline import load_model

    lm, _ = load_model(tiny_model, "cpu")
    full = segment_study(study, model=lm, mode="union", seed=3, gating=False, lesion_filter={})
    chosen = {}

    def pick(prob, brain_slices, *a):
        bs = list(brain_slices)
        chosen["in"] = bs[: len(bs) // 2]
        return chosen["in"]

    monkeypatch.setattr(pipeline, "gate_slices", pick)
    gated = segment_study(study, model=lm, mode="union", seed=3, gating=True, lesion_filter={})
    out = segment_study(study, model=lm, mode="out", seed=3, lesion_filter={})
    assert gated.stochastic_slices == len(chosen["in"]) < gated.brain_slices == full.brain_slices
    assert full.stochastic_slices == full.brain_slices
    # compare on the model grid's slices, which are the native slices (the plan keeps slices as acquired)
    a = {m: sitk.GetArrayFromImage(v) for m, v in full.labels_by_mode.items()}
    b = {m: sitk.GetArrayFromImage(v) for m, v in gated.labels_by_mode.items()}
    o = sitk.GetArrayFromImage(out.labels)
    inside = np.zeros(a["union"].shape[0], bool)
    inside[chosen["in"]] = True
    for m in ("salient", "infer", "union"):
        agree = (a[m][inside] == b[m][inside]).mean()
        assert agree > 0.9999, (m, agree)  # float rounding of batch-size-dependent convolutions only
        assert np.array_equal(b[m][~inside], o[~inside]), m
    assert np.array_equal(b["out"], o)


def test_noise_is_keyed_on_the_images_not_the_path_or_the_object(tiny_model, study, tmp_path):
    """The same volume under two file names, or passed as a Study object, gives the same stochastic mask."""
    from sdpm_cli.pipeline import load_model

    lm, _ = load_model(tiny_model, "cpu")
    paths = [tmp_path / "a.nii.gz", tmp_path / "other_name.nii.gz"]
    for p in paths:
        sitk.WriteImage(study.image, str(p))
    masks = [sitk.GetArrayFromImage(segment_study(s, model=lm, mode="infer", seed=1, lesion_filter={}).labels)
             for s in (*paths, study)]
    probs = [segment_study(s, model=lm, mode="infer", seed=1, lesion_filter={}).probs for s in (paths[0], study)]
    assert np.array_equal(masks[0], masks[1]) and np.array_equal(masks[0], masks[2])
    assert np.array_equal(probs[0], probs[1])
    other_seed = segment_study(study, model=lm, mode="infer", seed=2, lesion_filter={}).probs
    assert not np.array_equal(other_seed, probs[1])


def test_the_report_records_the_gate_and_the_slices_it_ran(tiny_model, study):
    """A gated `union` is reproducible from its report alone: the gate's settings and how many brain
    slices ran the stochastic modes; `--no-gating` says so; `out` has no gate to record."""
    from sdpm_cli.model.inference import PRESETS
    from sdpm_cli.outputs.report import report_from_segmentation, validate_report
    from sdpm_cli.pipeline import load_model

    lm, _ = load_model(tiny_model, "cpu")
    gated = report_from_segmentation(segment_study(study, model=lm, mode="union", seed=3, lesion_filter={}))
    full = report_from_segmentation(segment_study(study, model=lm, mode="union", seed=3, gating=False,
                                                  lesion_filter={}))
    out = report_from_segmentation(segment_study(study, model=lm, mode="out", seed=3, lesion_filter={}))
    for r in (gated, full, out):
        validate_report(r)
    g, f = gated["run"]["gating"], full["run"]["gating"]
    fast = PRESETS["fast"]
    assert g["enabled"] is True and f["enabled"] is False
    assert (g["threshold"], g["min_area_mm2"], g["margin"], g["margin_threshold"]) == (
        fast.gate_threshold, fast.gate_min_area_mm2, fast.gate_margin, fast.gate_margin_threshold)
    assert f["stochastic_slices"] == f["brain_slices"] == g["brain_slices"] > 0
    assert 0 <= g["stochastic_slices"] <= g["brain_slices"]
    assert "gating" not in out["run"]
