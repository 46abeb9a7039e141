"""The 3-D component filter: volume and slice-extent thresholds against hand-built masks."""

from __future__ import annotations

import numpy as np
import pytest

from sdpm_cli.postprocess.components import ComponentRule, LesionFilter, component_keep, filter_class_masks


def _mask() -> np.ndarray:
    m = np.zeros((10, 20, 20), dtype=bool)
    m[1:2, 2:6, 2:6] = True  # A: 16 voxels on 1 slice
    m[3:8, 10:12, 10:12] = True  # B: 20 voxels over 5 slices
    m[8, 12, 12] = True  # touches B diagonally (26-connected): B has 21 voxels over 6 slices
    m[0:3, 15:19, 15:19] = True  # C: 48 voxels over 3 slices
    return m


def test_volume_and_extent_thresholds_closed_form():
    m = _mask()
    vox_ml, dz = 0.5, 5.0  # voxel 0.5 mL, slices 5 mm apart
    # by volume: A 8 mL, B 10.5 mL, C 24 mL
    assert np.array_equal(component_keep(m, ComponentRule(min_ml=10.0), vox_ml, dz), m & ~_only(m, "A"))
    assert component_keep(m, ComponentRule(min_ml=24.0), vox_ml, dz).sum() == 48
    # by extent: A 5 mm, B 30 mm (the diagonal voxel counts), C 15 mm
    keep = component_keep(m, ComponentRule(min_extent_mm=15.0), vox_ml, dz)
    assert np.array_equal(keep, m & ~_only(m, "A"))
    assert component_keep(m, ComponentRule(min_extent_mm=30.0), vox_ml, dz).sum() == 21
    assert component_keep(m, ComponentRule(min_extent_mm=31.0), vox_ml, dz).sum() == 0
    # both conditions must hold
    assert component_keep(m, ComponentRule(min_ml=20.0, min_extent_mm=20.0), vox_ml, dz).sum() == 0
    # no rule: unchanged (a copy)
    out = component_keep(m, ComponentRule(), vox_ml, dz)
    assert np.array_equal(out, m) and out is not m


def _only(m: np.ndarray, which: str) -> np.ndarray:
    sel = np.zeros_like(m)
    if which == "A":
        sel[1:2, 2:6, 2:6] = True
    elif which == "B":
        sel[3:9, 10:13, 10:13] = True
    return sel & m


def test_per_class_rules_and_leading_sample_axis():
    m = _mask()
    masks = np.stack([m, m])[None].repeat(3, axis=0)  # [S=3, C=2, Z, Y, X]
    flt = LesionFilter.from_dict({"infarct": {"min_extent_mm": 15.0}})
    out = filter_class_masks(masks, flt, 0.5, 5.0)
    assert out.shape == masks.shape
    for s in range(3):
        assert not out[s, 0][1, 2:6, 2:6].any()  # infarct: thin component A removed
        assert np.array_equal(out[s, 1], m)  # hemorrhage: no rule
    assert flt.to_dict() == {"infarct": {"min_ml": 0.0, "min_extent_mm": 15.0}}
    assert not LesionFilter.from_dict(None).active
    with pytest.raises(ValueError, match="unknown classes"):
        LesionFilter.from_dict({"tumour": {"min_ml": 1}})
    with pytest.raises(ValueError, match=">= 0"):
        LesionFilter.from_dict({"infarct": {"min_ml": -1}})


def test_peak_probability_keeps_only_components_with_a_confident_core():
    m = _mask()
    prob = np.where(m, 0.55, 0.0).astype(np.float32)  # every component faint ...
    prob[5, 10, 10] = 0.93  # ... but B has one confident voxel
    prob[1, 3, 3] = 0.79  # and A one just below 0.8
    rule = ComponentRule(min_peak_prob=0.8)
    assert rule.active
    keep = component_keep(m, rule, 0.5, 5.0, prob=prob)
    assert np.array_equal(keep, _only(m, "B"))
    assert np.array_equal(component_keep(m, ComponentRule(min_peak_prob=0.79), 0.5, 5.0, prob=prob),
                          _only(m, "A") | _only(m, "B"))
    # without the probability the criterion is not applied (label files, baselines)
    assert np.array_equal(component_keep(m, rule, 0.5, 5.0), m)
    # with the other criteria: all must hold (B is 10.5 mL)
    assert component_keep(m, ComponentRule(min_ml=11.0, min_peak_prob=0.8), 0.5, 5.0, prob=prob).sum() == 0


def test_peak_rule_in_the_header_form_and_per_class_probabilities():
    flt = LesionFilter.from_dict({"infarct": {"min_ml": 1.0, "min_peak_prob": 0.7}, "hemorrhage": {"min_ml": 1.0}})
    assert flt.judges_peaks and not LesionFilter.from_dict({"infarct": {"min_ml": 1.0}}).judges_peaks
    # a rule without a peak criterion is written as before (older readers see the same keys)
    assert flt.to_dict() == {"infarct": {"min_ml": 1.0, "min_extent_mm": 0.0, "min_peak_prob": 0.7},
                             "hemorrhage": {"min_ml": 1.0, "min_extent_mm": 0.0}}
    assert LesionFilter.from_dict(flt.to_dict()) == flt
    with pytest.raises(ValueError):
        ComponentRule(min_peak_prob=1.5)
    m = np.stack([_mask(), _mask()])[None].repeat(2, axis=0)  # [S=2, C=2, Z, Y, X]
    probs = np.stack([np.where(_mask(), 0.6, 0.0), np.where(_mask(), 0.9, 0.0)]).astype(np.float32)
    out = filter_class_masks(m, flt, 0.5, 5.0, probs=probs)
    assert not out[:, 0].any()  # infarct components peak at 0.6 < 0.7: all dropped, in every sample
    assert np.array_equal(out[:, 1], m[:, 1])  # hemorrhage: every component is >= 1 mL
