"""Domain randomisation (family A): the nuisance ranges are really spanned, new blood kinds carry exact
labels where they belong, mimics stay unlabelled, and every case is still a pure function of its seed."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.synth import generate_case
from sdpm_cli.synth.config import DOMAINS, SynthConfig, case_streams, draw_head, draw_protocol
from sdpm_cli.synth.lesions import draw_lesion_plan, draw_mimic_plan
from tests.synth.conftest import cached_case, small_cfg

INTRACRANIAL = (1, 2, 3, 6, 7, 8)  # anatomy.TISSUE_CLASSES inside the cavity


def arr(img):
    return sitk.GetArrayFromImage(img)


def _seed_where(pred, n=400):
    for s in range(n):
        if pred(s):
            return s
    raise AssertionError("no seed found")


def _head(s, domain="randomised"):
    return draw_head(np.random.default_rng(case_streams(s)[0]), domain)


def test_randomised_draws_span_their_stated_ranges():
    r = DOMAINS["randomised"]
    heads = [_head(s) for s in range(400)]
    contrast = np.array([h.hu["gm"] - h.hu["wm"] for h in heads])
    wm = np.array([h.hu["wm"] for h in heads])
    atrophy = np.array([h.atrophy for h in heads])
    assert (contrast < 2.0).mean() > 0.08 and contrast.max() > 12.0        # none .. high grey-white contrast
    assert wm.min() < r.wm_hu[0] + 3 and wm.max() > r.wm_hu[1] - 3
    assert atrophy.min() < 0.1 and atrophy.max() > 1.2                     # none .. severe
    csf_gap = np.array([h.hu["wm"] - h.hu["csf"] for h in heads])
    assert csf_gap.min() >= r.csf_below_wm_hu - 1e-6
    prots = [draw_protocol(np.random.default_rng(case_streams(s)[1]), SynthConfig()) for s in range(400)]
    noise = np.array([p.noise_sigma for p in prots])
    fov = np.array([p.fov_mm for p in prots])
    psf = np.array([p.psf_sigma_mm for p in prots])
    assert noise.min() < 2.0 and noise.max() > 10.0
    assert fov.min() < 190 and fov.max() > 300
    assert psf.min() < 0.35 and psf.max() > 1.0
    # the clinical domain stays where it was: GM 35-40, GM-WM >= 5 HU
    clin = [_head(s, "clinical") for s in range(100)]
    assert all(35 <= h.hu["gm"] <= 40 and h.hu["gm"] - h.hu["wm"] >= 5 for h in clin)


def test_flat_grey_white_contrast_case_measures_below_2_hu():
    s = _seed_where(lambda s: _head(s).hu["gm"] - _head(s).hu["wm"] < 1.0)
    c = generate_case(s, small_cfg(lesion="none", with_tissue=True))
    a, t = arr(c.image).astype(float), arr(c.tissue)
    assert c.meta["head"]["gm_wm_contrast_hu"] < 1.0
    deep_grey = ndimage.binary_erosion(t == 7, iterations=1)  # away from CSF partial volume
    deep_wm = ndimage.binary_erosion(t == 3, iterations=1)
    assert deep_grey.sum() > 50 and deep_wm.sum() > 100
    assert abs(np.median(a[deep_grey]) - np.median(a[deep_wm])) < 2.0


def test_severe_atrophy_has_far_more_csf_than_none():
    severe = _seed_where(lambda s: _head(s).atrophy > 1.2)
    young = _seed_where(lambda s: _head(s).atrophy < 0.15)

    def csf_share(s):
        t = arr(generate_case(s, small_cfg(lesion="none", with_tissue=True)).tissue)
        inside = np.isin(t, INTRACRANIAL)
        return float(np.isin(t, (1, 8))[inside].mean())

    assert csf_share(severe) > 1.8 * csf_share(young)


@pytest.mark.parametrize("kind", ["subdural", "epidural"])
def test_extra_axial_blood_is_labelled_exactly_against_the_inner_table(kind):
    c = cached_case(11, "hemorrhage", plan=(kind,))
    les = [x for x in c.meta["lesions"] if x["kind"] == kind]
    assert les and les[0]["location_class"] == "extra-axial"
    lab, a = arr(c.label), arr(c.image).astype(float)
    sp = c.image.GetSpacing()
    vox_ml = float(np.prod(sp)) / 1000.0
    assert set(np.unique(lab)) <= {0, 2}
    assert c.meta["volume_ml"]["hemorrhage"] == pytest.approx((lab == 2).sum() * vox_ml, abs=1e-3)
    assert c.meta["volume_ml"]["hemorrhage"] > 0.5
    # the blood lies against the skull: distance from each labelled voxel to bone (> 300 HU)
    dist = ndimage.distance_transform_edt(a <= 300, sampling=sp[::-1])
    d = dist[lab == 2]
    assert np.median(d) <= les[0]["max_thickness_mm"] * c.meta["head"]["scale"] + 2 * sp[0]
    assert (d < 4.0).mean() > 0.5  # most of it touches the inner table
    core = ndimage.binary_erosion(lab == 2)
    brain = max(c.meta["head"]["hu"]["wm"], c.meta["head"]["hu"]["gm"])
    if core.sum() > 10:
        assert np.median(a[core]) > brain + 8.0  # brighter than the brain it replaces


def test_subarachnoid_and_contusion_kinds_are_labelled_hemorrhage():
    for kind, loc in (("subarachnoid", "subarachnoid"), ("contusion", "intra-axial")):
        c = cached_case(12, "hemorrhage", plan=(kind,))
        les = [x for x in c.meta["lesions"] if x["kind"] == kind]
        assert les and all(x["location_class"] == loc for x in les)
        lab = arr(c.label)
        assert c.meta["volume_ml"]["hemorrhage"] == pytest.approx((lab == 2).sum() * float(np.prod(c.label.GetSpacing())) / 1000.0, abs=1e-3)


def test_mimics_are_drawn_and_never_labelled():
    r = DOMAINS["randomised"]
    s = _seed_where(lambda s: bool(draw_mimic_plan(np.random.default_rng(case_streams(s)[9]), r)) and _head(s).flags["basal_calc"])
    c = generate_case(s, small_cfg(lesion="none", with_tissue=True))
    kinds = {m["kind"] for m in c.meta["mimics"]}
    assert {"old_infarct", "basal_calc"} <= kinds
    lab, a, t = arr(c.label), arr(c.image).astype(float), arr(c.tissue)
    assert not lab.any()  # a lesion-free head with an old infarct and calcifications has an empty label
    inside = np.isin(t, INTRACRANIAL)
    assert (inside & (a > 120)).sum() > 0  # the calcifications are there, bright, inside the head


def test_forced_plan_and_artefacts_are_deterministic():
    s = _seed_where(lambda s: np.random.default_rng(case_streams(s)[8]).random() < 0.1)  # some artefact draws
    cfg = small_cfg(lesion="hemorrhage")
    a = generate_case(s, cfg, plan=("subdural", "contusion"))
    b = generate_case(s, cfg, plan=("subdural", "contusion"))
    assert np.array_equal(arr(a.image), arr(b.image)) and np.array_equal(arr(a.label), arr(b.label))
    assert a.meta == b.meta
    assert a.meta["pose"]["deformation_mm"] >= 0 and "artefacts" in a.meta


def test_deformation_keeps_image_and_label_aligned():
    s = _seed_where(lambda s: True)
    c = cached_case(13, "hemorrhage", plan=("lobar",))
    assert c.meta["pose"]["deformation_mm"] > 0.5
    lab, a = arr(c.label), arr(c.image).astype(float)
    core = ndimage.binary_erosion(lab == 2, iterations=1)
    assert core.sum() > 5
    ring = ndimage.binary_dilation(lab == 2, iterations=3) & ~ndimage.binary_dilation(lab == 2, iterations=1)
    assert np.median(a[core]) > np.median(a[ring & (a > -50) & (a < 100)]) + 10  # the bright blob is where the label is
    del s


def test_shapeless_infarcts_are_hypodense_blobs_anywhere_and_labelled_infarct():
    """Shape randomisation (SynthConfig.shapeless_infarct_prob): a blob of no vascular shape, darker
    than the tissue it replaces, labelled 1 voxel for voxel; cerebellum and brainstem are allowed."""
    c = generate_case(21, small_cfg(lesion="infarct", with_tissue=True, domain="clinical"), plan=("shapeless",))
    les = [x for x in c.meta["lesions"] if x["kind"] == "shapeless"]
    assert len(les) == 1 and les[0]["location_class"] == "intra-axial" and les[0]["class"] == 1
    lab, a, t = arr(c.label), arr(c.image).astype(float), arr(c.tissue)
    voxel_ml = float(np.prod(c.label.GetSpacing())) / 1000.0
    assert (lab == 1).any() and not (lab == 2).any()
    assert c.meta["volume_ml"]["infarct"] == pytest.approx((lab == 1).sum() * voxel_ml, abs=1e-3)
    core = ndimage.binary_erosion(lab == 1, iterations=1)
    brain = np.isin(t, (2, 3, 7)) & (lab == 0)
    assert core.sum() > 5 and np.median(a[brain]) - np.median(a[core]) >= 1.0


def test_shapeless_probability_zero_keeps_every_plan_as_before():
    """The option draws nothing from the case's random stream when it is 0: data sets made before it
    existed regenerate bit for bit from their seeds."""
    for s in range(30):
        a = draw_lesion_plan(np.random.default_rng(s), "both", 0.1)
        b = draw_lesion_plan(np.random.default_rng(s), "both", 0.1, shapeless_prob=0.0)
        assert a == b and "shapeless" not in a
    mixed = [draw_lesion_plan(np.random.default_rng(s), "infarct", 0.0, shapeless_prob=0.5) for s in range(60)]
    kinds = {k for p in mixed for k in p}
    assert {"shapeless", "territorial"} <= kinds
    with pytest.raises(ValueError):
        SynthConfig(shapeless_infarct_prob=1.5)
