"""generate_case: determinism, geometry, truth volumes, lesion HU and tissue HU statistics."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.synth import SynthConfig, generate_case
from tests.synth.conftest import cached_case, small_cfg


def arr(img):
    return sitk.GetArrayFromImage(img)


def test_same_seed_gives_identical_case():
    a = generate_case(7, small_cfg())
    b = cached_case(7)
    assert np.array_equal(arr(a.image), arr(b.image))
    assert np.array_equal(arr(a.label), arr(b.label))
    assert a.meta == b.meta
    c = cached_case(8)
    assert c.image.GetSize() != a.image.GetSize() or not np.array_equal(arr(c.image), arr(a.image))


@pytest.mark.parametrize("seed", [1, 2])
def test_image_and_label_share_exact_axial_geometry(seed):
    c = cached_case(seed)
    img, lab = c.image, c.label
    assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
    assert img.GetSize() == lab.GetSize()
    assert img.GetOrigin() == lab.GetOrigin() and img.GetSpacing() == lab.GetSpacing()
    assert img.GetDirection() == lab.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    p = c.meta["protocol"]
    sx, sy, sz = img.GetSpacing()
    assert sz == p["slice_thickness_mm"] == 5.0
    assert sx == sy == pytest.approx(p["fov_mm"] / p["matrix"])
    assert img.GetSize()[:2] == (128, 128) and img.GetSize()[2] == p["n_slices"]
    # the stack covers the head from below the foramen magnum to the vertex
    assert 120.0 <= p["n_slices"] * sz <= 200.0
    a = arr(img)
    assert a[0].max() > 300 and (a[-1] > -500).mean() < 0.05  # skull base at the bottom, air above the vertex


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_label_volumes_equal_meta(seed):
    c = cached_case(seed)
    lab = arr(c.label)
    vox_ml = float(np.prod(c.label.GetSpacing())) / 1000.0
    assert set(np.unique(lab)) <= {0, 1, 2}
    for cls, name in ((1, "infarct"), (2, "hemorrhage")):
        assert c.meta["volume_ml"][name] == pytest.approx((lab == cls).sum() * vox_ml, abs=1e-3)
        per_lesion = sum(les["volume_ml"] for les in c.meta["lesions"] if les["class"] == cls)
        assert per_lesion == pytest.approx(c.meta["volume_ml"][name], abs=2e-3)


@pytest.mark.parametrize("domain", ["clinical", "randomised"])
def test_lesion_modes_and_hu(domain):
    from sdpm_cli.synth.config import DOMAINS
    from sdpm_cli.synth.lesions import HEMORRHAGE_KINDS, INFARCT_KINDS, LOCATION_OF_KIND

    r = DOMAINS[domain]
    hem = cached_case(21, "hemorrhage", domain=domain)
    inf = cached_case(22, "infarct", domain=domain)
    none = cached_case(23, "none", domain=domain)
    assert hem.meta["volume_ml"]["hemorrhage"] > 0.5 and hem.meta["volume_ml"]["infarct"] == 0
    assert inf.meta["volume_ml"]["infarct"] > 0.05 and inf.meta["volume_ml"]["hemorrhage"] == 0
    assert none.meta["lesions"] == [] and not arr(none.label).any()
    brain_hu = max(hem.meta["head"]["hu"]["wm"], hem.meta["head"]["hu"]["gm"])
    for les in hem.meta["lesions"]:
        assert les["kind"] in HEMORRHAGE_KINDS and les["location_class"] == LOCATION_OF_KIND[les["kind"]]
        assert r.blood_hu[0] <= les["hu"] and les["hu"] >= brain_hu + r.blood_above_brain_hu - 0.1
    for les in inf.meta["lesions"]:
        lo, hi = r.infarct_delta_hu
        assert lo <= les["delta_hu"] <= max(hi, 12.0) and les["kind"] in INFARCT_KINDS
    # hemorrhage is bright in the image, well above brain
    a, lab = arr(hem.image), arr(hem.label)
    core = ndimage.binary_erosion(lab == 2, iterations=1)
    if core.sum() > 20:
        assert 45 <= np.median(a[core]) <= 95


def test_mixed_mode_has_lesion_free_and_both_classes():
    from sdpm_cli.synth.config import case_rng
    from sdpm_cli.synth.lesions import draw_lesion_plan

    plans = [draw_lesion_plan(case_rng(s), "both", 0.1) for s in range(400)]
    free = sum(not p for p in plans) / len(plans)
    assert 0.05 <= free <= 0.16
    assert any("territorial" in p for p in plans) and any("lacune" in p for p in plans)
    assert any(k in p for p in plans for k in ("lobar", "deep", "intraventricular"))
    assert any("lacune" in p or "territorial" in p for p in plans if any(k in p for k in ("lobar", "deep")))


def test_tissue_hu_statistics_match_stated_ranges():
    c = cached_case(31, "none", 1.0, True, "clinical")
    a, t = arr(c.image).astype(float), arr(c.tissue)
    hu = c.meta["head"]["hu"]
    assert 35 <= hu["gm"] <= 40 and 25 <= hu["wm"] <= 30 and hu["gm"] - hu["wm"] >= 5

    def core(cls, it=1):
        m = ndimage.binary_erosion(t == cls, iterations=it) if it else t == cls
        assert m.sum() > 200, cls
        return a[m]

    wm, deep, vent = core(3), core(7), core(8)
    assert 24 <= np.median(wm) <= 31
    assert 33 <= np.median(deep) <= 41
    assert -3 <= np.median(vent) <= 15
    assert np.median(core(2, 0)) > np.median(wm) + 2  # cortex brighter than white matter despite partial volume
    assert np.median(a[t == 4]) > 300
    assert np.median(a[t == 0]) < -900
    sigma = c.meta["protocol"]["noise_sigma_hu"]
    assert 3 <= sigma <= 8
    # white matter is uniform: its spread is the noise (plus a little anatomy)
    assert 0.7 * sigma <= wm.std() <= 1.5 * sigma


def test_infarct_is_subtly_hypodense():
    c = cached_case(41, "infarct", 5.0, True, "clinical")
    a, lab, t = arr(c.image).astype(float), arr(c.label), arr(c.tissue)
    brain = np.isin(t, (2, 3, 7)) & (lab == 0)
    inf = ndimage.binary_erosion(lab == 1)
    assert inf.sum() > 10
    drop = np.median(a[brain]) - np.median(a[inf])
    assert 1.0 <= drop <= 15.0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        SynthConfig(lesion="tumour")
    with pytest.raises(ValueError):
        SynthConfig(thicknesses_mm=(5.0,), thickness_weights=(0.5, 0.5))
    with pytest.raises(ValueError):
        SynthConfig(matrix=129)


def test_matrix_changes_sampling_not_the_patient():
    a = cached_case(5)
    b = generate_case(5, small_cfg(matrix=64))
    assert a.meta["head"] == b.meta["head"] and a.meta["pose"] == b.meta["pose"]
    assert [les["kind"] for les in a.meta["lesions"]] == [les["kind"] for les in b.meta["lesions"]]
    assert b.image.GetSize()[:2] == (64, 64)
    # the same physical lesions: class volumes agree within the coarser grid's partial-volume error
    for name, v in a.meta["volume_ml"].items():
        assert b.meta["volume_ml"][name] == pytest.approx(v, rel=0.25, abs=0.3)
