"""benchmarks/accuracy/real_insert.py (family C): blending, labelling and shapes against closed forms, and
one end-to-end run on the real GE fixture (skipped where ../shared/fixtures/dcm_qa_ct is absent)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "accuracy"))

import real_insert as ri  # noqa: E402

SPACING = (0.8, 0.8, 4.0)  # x, y, z mm
SHAPE = (24, 128, 128)  # z, y, x


def _phantom(seed: int = 0):
    """A small synthetic head: ellipsoidal brain (30 HU, two 8 HU ventricles) in a 1000 HU skull, in air."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    zc, yc, xc = (SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2, (SHAPE[2] - 1) / 2
    r = np.sqrt(((x - xc) * SPACING[0] / 40) ** 2 + ((y - yc) * SPACING[1] / 46) ** 2 + ((z - zc) * SPACING[2] / 44) ** 2)
    brain = r < 1.0
    skull = (r >= 1.0) & (r < 1.15)
    hu = np.full(SHAPE, -1000.0)
    hu[skull] = 1000.0
    hu[brain] = 30.0
    for side in (-1, 1):
        v = np.sqrt(((x - xc - side * 8 / SPACING[0]) * SPACING[0] / 5) ** 2 + ((y - yc) * SPACING[1] / 18) ** 2
                    + ((z - zc) * SPACING[2] / 10) ** 2) < 1
        hu[v & brain] = 8.0
    hu[brain] += np.random.default_rng(seed).normal(0, 3.0, int(brain.sum()))
    return ri.to_int16(hu), brain


@pytest.fixture(scope="module")
def phantom_bg():
    hu, brain = _phantom()
    par, csf = ri.tissue_masks(hu, brain)
    geo = ri.brain_geometry(brain, SPACING)
    noise = ri.residual_stats(hu, par)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(SPACING)
    return ri.Background(
        name="phantom", image=img, hu=hu, spacing=SPACING, slab_mm=SPACING[2], brain=brain, parenchyma=par, csf=csf,
        dist2d=ri.inner_table_distance(brain, SPACING), dist3d=ri.inner_table_distance(brain, SPACING, in_plane=False),
        geo=geo, noise=noise, texture=ri.fit_noise_texture(noise), avoid=np.zeros(SHAPE, bool))


# ---------------------------------------------------------------- blending and labels


def test_blend_blood_closed_forms():
    rng = np.random.default_rng(1)
    hu = rng.integers(-100, 1500, (4, 5, 6)).astype(np.float32)
    noise = rng.normal(0, 3, hu.shape).astype(np.float32)
    one = ri.blend_blood(hu, np.ones(hu.shape, np.float32), 63.5, noise)
    np.testing.assert_array_equal(one, np.float32(63.5) + noise)
    zero = ri.blend_blood(hu, np.zeros(hu.shape, np.float32), 63.5, noise)
    np.testing.assert_array_equal(zero, hu)
    f = rng.uniform(0, 1, hu.shape).astype(np.float32)
    np.testing.assert_allclose(ri.blend_blood(hu, f, 63.5, noise), (1 - f) * hu + f * (63.5 + noise), rtol=1e-6, atol=1e-3)


def test_blend_infarct_lowers_parenchyma_only():
    hu = np.array([[[30.0, 35.0, 8.0, 900.0, -1000.0]]], np.float32)
    par = np.array([[[True, True, False, False, False]]])
    f = np.array([[[1.0, 0.5, 1.0, 1.0, 1.0]]], np.float32)
    out = ri.blend_infarct(hu, f, 6.0, par)
    np.testing.assert_array_equal(out[par], hu[par] - f[par] * 6.0)  # exactly f * delta lower
    np.testing.assert_array_equal(out[~par], hu[~par])  # CSF, bone, air untouched
    assert out[0, 0, 1] == pytest.approx(32.0)


def test_labels_rule_at_half():
    brain = np.array([[[1, 1, 1, 1, 1, 0, 1]]], bool)
    par = np.array([[[1, 1, 1, 1, 0, 0, 1]]], bool)  # voxel 4 is CSF, voxel 5 outside the brain
    fb = np.array([[[0.5, 0.4999, 0.0, 0.0, 0.0, 0.9, 0.6]]], np.float32)
    fi = np.array([[[0.0, 0.0, 0.5, 0.4999, 0.9, 0.9, 0.9]]], np.float32)
    lab = ri.labels_from_fractions(fb, fi, brain, par)
    assert lab.dtype == np.uint8
    # blood at 0.5 -> 2, just under -> 0; infarct at 0.5 -> 1, just under -> 0; infarct on CSF -> 0;
    # outside the brain -> 0; blood and infarct -> 2
    assert lab.ravel().tolist() == [2, 0, 1, 0, 0, 0, 2]


def test_to_int16_rounds_and_clips():
    out = ri.to_int16(np.array([1.49, 1.5, -2.5, 40000.0, -40000.0]))
    assert out.dtype == np.int16 and out.tolist() == [1, 2, -2, 32767, -32768]


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("maker", [ri.subdural_field, ri.epidural_field])
def test_table_collections_hug_the_inner_table(phantom_bg, maker):
    bg = phantom_bg
    for seed in range(3):
        f, info = maker(bg.brain, bg.spacing, np.random.default_rng(seed), dist2d=bg.dist2d, geo=bg.geo)
        assert f.dtype == np.float32 and f.shape == bg.brain.shape
        assert f.min() >= 0 and f.max() <= 1
        assert (f >= 0.5).sum() > 50, info
        assert not (f[~bg.brain] > 0).any()  # inside the brain only
        # within the stated maximum thickness of the inner table (one pixel of partial-volume slack)
        assert bg.dist2d[f >= 0.5].max() <= info["max_thickness_mm"] + max(SPACING[:2]) + 1e-6, info
        lo, hi = (4.0, 15.0) if maker is ri.subdural_field else (8.0, 25.0)
        assert lo <= info["max_thickness_mm"] <= hi
        # one side: the lesion stays on one side of the midline
        xs = np.nonzero(f >= 0.5)[2] * SPACING[0] - bg.geo.midline_x
        assert (xs > 0).all() or (xs < 0).all()


def test_hematoma_and_infarct_fields(phantom_bg):
    bg = phantom_bg
    voxel_ml = float(np.prod(SPACING)) / 1000
    f, info = ri.hematoma_field(bg.brain, bg.spacing, np.random.default_rng(3), parenchyma=bg.parenchyma,
                                dist3d=bg.dist3d, geo=bg.geo, volume_ml=12.0)
    assert not (f[~bg.brain] > 0).any()
    assert (f >= 0.5).sum() * voxel_ml == pytest.approx(12.0, rel=0.2)
    c = np.array(info["centre_mm_zyx"]) / np.array(SPACING[::-1])
    assert bg.dist3d[tuple(np.round(c).astype(int))] >= 10.0 - 1.0
    f, info = ri.infarct_field(bg.brain, bg.spacing, np.random.default_rng(4), parenchyma=bg.parenchyma,
                               geo=bg.geo, volume_ml=30.0)
    lab = ri.labels_from_fractions(np.zeros_like(f), f, bg.brain, bg.parenchyma)
    assert (lab == 1).sum() * voxel_ml == pytest.approx(30.0, rel=0.2)
    assert not (lab[bg.csf] == 1).any()  # never on CSF
    xs = np.nonzero(f > 0)[2] * SPACING[0] - bg.geo.midline_x
    assert (xs > 0).all() or (xs < 0).all()  # one hemisphere


def test_noise_field_matches_background_level(phantom_bg):
    bg = phantom_bg
    where = np.zeros(SHAPE, bool)
    where[4:20, 20:108, 20:108] = True
    n = ri.noise_field(SHAPE, where, bg.texture, 1.0, np.random.default_rng(0))
    inner = np.zeros(SHAPE, bool)
    inner[6:18, 26:102, 26:102] = True
    got = ri.residual_stats(n, inner)["sigma"]
    assert got == pytest.approx(bg.noise["sigma"], rel=0.15)
    assert not n[~where].any() and n[where].std() > 0


# ---------------------------------------------------------------- cases


def test_case_plan_covers_all_kinds():
    plan = ri.case_plan(24)
    assert set(plan) == set(ri.LESION_KINDS) | {"free"}
    assert 2 <= plan.count("free") <= 4
    assert "free" in ri.case_plan(3)
    assert ri.case_name(3, "free") == "free_realC_0003" and ri.case_name(0, "subdural") == "realC_0000"


@pytest.mark.parametrize("kind", ri.LESION_KINDS + ("free",))
def test_make_case_deterministic(phantom_bg, kind):
    hu1, lab1, e1, _ = ri.make_case([phantom_bg], 70, 2, kind)
    hu2, lab2, e2, _ = ri.make_case([phantom_bg], 70, 2, kind)
    np.testing.assert_array_equal(hu1, hu2)
    np.testing.assert_array_equal(lab1, lab2)
    assert e1 == e2
    assert hu1.dtype == np.int16 and lab1.dtype == np.uint8 and hu1.shape == SHAPE
    hu3, lab3, e3, _ = ri.make_case([phantom_bg], 71, 2, kind)
    if kind == "free":
        assert not lab1.any() and e1["lesions"] == []
        # lesion-free: the background itself, mirrored or not
        assert np.array_equal(hu1, phantom_bg.hu) or np.array_equal(hu1, phantom_bg.hu[:, :, ::-1])
    else:
        assert lab1.any()
        assert not np.array_equal(hu1, hu3)
        voxel_ml = float(np.prod(SPACING)) / 1000
        for c, name in ri.CLASSES.items():
            assert e1["volume_ml"][name] == pytest.approx(int((lab1 == c).sum()) * voxel_ml, abs=1e-3)
        assert set(np.unique(lab1).tolist()) <= {0, 1, 2}
        classes = {les["class"] for les in e1["lesions"]}
        assert classes == {c for c in (1, 2) if (lab1 == c).any()}


# ---------------------------------------------------------------- the real GE fixture


@pytest.mark.slow
@pytest.mark.fixtures
def test_script_on_ge_fixture(tmp_path, dcm_qa_ct):
    ge = dcm_qa_ct / "GE"
    if not ge.is_dir():
        pytest.skip("../shared/fixtures/dcm_qa_ct/GE is absent")
    fx = tmp_path / "fx"
    fx.mkdir()
    (fx / "GE").symlink_to(ge)  # GE only (the Philips phantom is checked and skipped by the full run)
    out = tmp_path / "setC"
    assert ri.main(["--out", str(out), "--cases", "3", "--seed", "70", "--fixtures", str(fx)]) == 0
    assert ri.main(["--out", str(out), "--cases", "3", "--fixtures", str(fx)]) == 2  # no overwrite without --force
    assert ri.main(["--out", str(tmp_path / "x"), "--fixtures", str(tmp_path / "absent")]) == 3

    from sdpm_cli.evaluate.cases import dataset_cases, grid_mismatch
    from sdpm_cli.ingest import load_study

    ref = load_study(ge, correct_tilt=True, resample_gaps=True).image
    man = json.loads((out / "manifest.json").read_text())
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["numTest"] == 3 and ds["labels"] == {"background": 0, "infarct": 1, "hemorrhage": 2}
    assert [b["name"] for b in man["backgrounds"]] == ["GE"]
    cases = {c.case: c for c in dataset_cases(out)}
    assert set(cases) == {c["id"] for c in man["cases"]}
    assert any(n.startswith("free_") for n in cases)
    for entry in man["cases"]:
        img = sitk.ReadImage(str(out / entry["image"]))
        lab = sitk.ReadImage(str(out / entry["label"]))
        assert grid_mismatch(img, ref) is None and grid_mismatch(lab, ref) is None
        assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
        arr = sitk.GetArrayFromImage(lab)
        assert set(np.unique(arr).tolist()) <= {0, 1, 2}
        ign = sitk.GetArrayFromImage(sitk.ReadImage(str(out / entry["ignore"])))  # the real unlabelled finding
        assert ign.any() and not (arr[ign > 0] == 1).any()  # no inserted infarct lies in it (blood may cross it)
        voxel_ml = float(np.prod(ref.GetSpacing())) / 1000
        for c, name in ri.CLASSES.items():
            assert entry["volume_ml"][name] == pytest.approx(int((arr == c).sum()) * voxel_ml, abs=1e-3)
        assert sum(les["volume_ml"] for les in entry["lesions"]) == pytest.approx(sum(entry["volume_ml"].values()), abs=1e-3)
        if entry["id"].startswith("free_"):
            assert not arr.any() and entry["lesions"] == []
        else:
            assert arr.any()
