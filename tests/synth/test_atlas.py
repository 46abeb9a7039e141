"""Phantom family B ("atlas"): determinism, truth volumes, where each lesion kind lies, HU, mimics, ingest."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

pytest.importorskip("nilearn", reason="family atlas needs nilearn (it ships the MNI ICBM152 atlas)")

from sdpm_cli.errors import UsageError  # noqa: E402
from sdpm_cli.synth import SynthConfig, generate_case  # noqa: E402
from sdpm_cli.synth.atlas import draw_plan, generate_atlas_case  # noqa: E402
from sdpm_cli.synth.atlas.head import TISSUE_CLASSES  # noqa: E402

VENTRICLE = next(k for k, v in TISSUE_CLASSES.items() if v == "ventricle")
CSF = next(k for k, v in TISSUE_CLASSES.items() if v == "csf")
GREY, WHITE = (next(k for k, v in TISSUE_CLASSES.items() if v == n) for n in ("grey matter", "white matter"))


def atlas_cfg(**kw) -> SynthConfig:
    base = dict(family="atlas", matrix=128, anatomy_mm=1.5, thicknesses_mm=(5.0,), thickness_weights=(1.0,))
    base.update(kw)
    return SynthConfig(**base)


@functools.lru_cache(maxsize=None)
def case(seed: int, plan: tuple | None = None, thickness: float = 5.0, matrix: int = 128, with_tissue: bool = False,
         lesion: str = "both"):
    cfg = atlas_cfg(thicknesses_mm=(thickness,), matrix=matrix, with_tissue=with_tissue, lesion=lesion)
    return generate_atlas_case(seed, cfg, plan=None if plan is None else list(plan))


def arr(img):
    return sitk.GetArrayFromImage(img)


def test_same_seed_gives_identical_case_and_dispatch():
    a = generate_case(3, atlas_cfg())  # through the public dispatch
    b = case(3)
    assert np.array_equal(arr(a.image), arr(b.image))
    assert np.array_equal(arr(a.label), arr(b.label))
    assert json.dumps(a.meta, sort_keys=True) == json.dumps(b.meta, sort_keys=True)
    assert a.meta["family"] == "atlas" and a.meta["generator"].startswith("sdpm synth")
    c = case(4)
    assert c.image.GetSize() != a.image.GetSize() or not np.array_equal(arr(c.image), arr(a.image))


@pytest.mark.parametrize("seed", [3, 5])
def test_geometry_labels_and_volumes(seed):
    c = case(seed)
    img, lab = c.image, c.label
    assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
    assert img.GetSize() == lab.GetSize() and img.GetOrigin() == lab.GetOrigin()
    assert img.GetSpacing() == lab.GetSpacing()
    assert img.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    p = c.meta["protocol"]
    sx, sy, sz = img.GetSpacing()
    assert sz == p["slice_thickness_mm"] == 5.0 and sx == sy == round(sx, 4)
    assert sx == pytest.approx(p["fov_mm"] / p["matrix"])
    assert 120.0 <= p["n_slices"] * sz <= 230.0
    a = arr(img)
    assert a.min() >= -1024 and a.max() <= 3071 and a.max() > 700  # skull
    labels = arr(lab)
    assert set(np.unique(labels)) <= {0, 1, 2}
    vox_ml = float(np.prod(img.GetSpacing())) / 1000.0
    assert c.meta["voxel_ml"] == pytest.approx(vox_ml)
    for cls, name in ((1, "infarct"), (2, "hemorrhage")):
        assert c.meta["volume_ml"][name] == pytest.approx((labels == cls).sum() * vox_ml, abs=1e-3)
        assert c.meta["voxels"][name] == int((labels == cls).sum())
        per = sum(les["volume_ml"] for les in c.meta["lesions"] if les["class"] == cls)
        assert per == pytest.approx(c.meta["volume_ml"][name], abs=2e-3)
    for les in c.meta["lesions"]:
        assert les["location_class"] in ("intra-axial", "intraventricular", "extra-axial", "subarachnoid")
        assert les["kind"] in ("territorial", "lacune", "lobar", "deep", "intraventricular", "subdural", "epidural",
                               "subarachnoid", "contusion")
    # the brain window shows brain: most intracranial soft tissue between 0 and 60 HU
    soft = a[(a > -20) & (a < 100)]
    assert 15.0 < float(np.median(soft)) < 50.0


def test_lesion_modes_and_plan_mix():
    assert case(6, lesion="none").meta["lesions"] == []
    assert {les["class"] for les in case(6, lesion="infarct").meta["lesions"]} == {1}
    assert {les["class"] for les in case(6, lesion="hemorrhage").meta["lesions"]} == {2}
    plans = [draw_plan(np.random.default_rng(s), "both", 0.1) for s in range(600)]
    free = sum(not p for p in plans) / len(plans)
    assert 0.06 < free < 0.14
    cats = [{"territorial": 1, "lacune": 1}.get(d["kind"], 2) for p in plans for d in p]
    assert 1 in cats and 2 in cats
    both = sum(1 for p in plans if {1, 2} <= {({"territorial": 1, "lacune": 1}.get(d["kind"], 2)) for d in p})
    assert both > 60
    with pytest.raises(ValueError):
        generate_atlas_case(1, atlas_cfg(), plan=["tumour"])


def _skull_distance(c):
    a = arr(c.image)
    return ndimage.distance_transform_edt(a <= 300, sampling=c.image.GetSpacing()[::-1])


@pytest.mark.parametrize("kind", ["subdural", "epidural"])
def test_extra_axial_collections_lie_against_the_inner_table(kind):
    item = {"kind": kind, "site": "convexity"} if kind == "subdural" else {"kind": kind}
    c = generate_atlas_case(11, atlas_cfg(), plan=[item])
    lab = arr(c.label)
    les = [x for x in c.meta["lesions"] if x["kind"] == kind]
    assert len(les) == 1 and les[0]["location_class"] == "extra-axial" and les[0]["volume_ml"] > 0.5
    m = lab == 2
    assert c.meta["volume_ml"]["hemorrhage"] == pytest.approx(les[0]["volume_ml"], abs=1e-3)
    d = _skull_distance(c)[m]
    assert d.min() < 2.5  # touches the inner table
    assert np.median(d) <= les[0]["thickness_mm"] / 2 + 4.0
    hu = arr(c.image)[m]
    assert np.median(hu) > 40  # acute blood (plus some bone partial volume)


def test_intraventricular_blood_lies_in_the_ventricles():
    c = case(12, ("intraventricular",), with_tissue=True)
    lab, tis = arr(c.label), arr(c.tissue)
    m = lab == 2
    assert m.sum() > 10 and c.meta["lesions"][0]["location_class"] == "intraventricular"
    vent = ndimage.binary_dilation(tis == VENTRICLE, iterations=1)
    assert vent[m].mean() > 0.95
    assert (tis[m] == VENTRICLE).mean() > 0.6
    assert _skull_distance(c)[m].min() > 10.0  # deep inside


@pytest.mark.parametrize("kind", ["subarachnoid", "lobar", "deep", "contusion"])
def test_other_hemorrhage_kinds_are_produced_and_placed(kind):
    c = case(13, (kind,), with_tissue=True)
    lab, tis = arr(c.label), arr(c.tissue)
    m = lab == 2
    les = [x for x in c.meta["lesions"] if x["kind"] == kind]
    assert les and all(x["class"] == 2 for x in les) and m.sum() > 5
    d = _skull_distance(c)[m]
    if kind == "subarachnoid":
        assert les[0]["location_class"] == "subarachnoid"
        assert np.isin(tis[m], [CSF, VENTRICLE]).mean() > 0.7  # blood in the CSF spaces
    else:
        assert les[0]["location_class"] == "intra-axial"
        assert np.isin(tis[m], [GREY, WHITE, CSF]).mean() > 0.9
    if kind == "contusion":
        assert np.median(d) < 12.0  # cortical
    if kind == "deep":
        assert np.median(d) > 12.0


def test_infarct_is_hypodense_relative_to_the_tissue_it_replaces():
    plan = ({"kind": "territorial", "territory": "MCA", "volume_ml": 60.0},)
    cfg = atlas_cfg(with_tissue=True)
    c = generate_atlas_case(21, cfg, plan=list(plan))
    twin = generate_atlas_case(21, cfg, plan=[])  # the same head and scan without the lesion
    lab, tis = arr(c.label), arr(c.tissue)
    img, ref = arr(c.image).astype(float), arr(twin.image).astype(float)
    m = lab == 1
    les = c.meta["lesions"][0]
    assert les["kind"] == "territorial" and les["volume_ml"] > 20 and "MCA" in les["location"]
    assert 3.0 <= les["drop_wm_hu"] <= les["drop_gm_hu"] <= 12.0  # grey-white contrast is lost
    diff = img - ref
    for cls in (GREY, WHITE):
        sel = m & (tis == cls)
        assert sel.sum() > 20
        assert -12.5 < diff[sel].mean() < -2.0
    # same tissue elsewhere (away from the lesion) is unchanged, up to rounding of the band-limited interpolation
    far = ~ndimage.binary_dilation(m, iterations=3)
    assert np.abs(diff[far & (tis == WHITE)]).max() <= 1 and np.abs(diff[far]).mean() < 0.05
    # and darker than the same voxels of the lesion-free twin
    assert img[m & (tis == WHITE)].mean() < ref[m & (tis == WHITE)].mean() - 2.0


def test_calcifications_are_bright_and_unlabelled():
    c = case(7, ("territorial", "lobar"), thickness=2.5, matrix=192)
    calcs = [m for m in c.meta["mimics"] if m["kind"] == "calcification"]
    assert calcs, "seed 7 has calcifications"
    assert {m["kind"] for m in c.meta["mimics"]} >= {"venous_sinus", "falx", "calcification"}
    img, lab = arr(c.image), arr(c.label)
    sp = np.array(c.image.GetSpacing())
    org = np.array(c.image.GetOrigin())
    peaks = []
    for m in calcs:
        i, j, k = np.rint((np.array(m["centre_mm"]) - org) / sp).astype(int)
        sl = (slice(max(k - 1, 0), k + 2), slice(max(j - 3, 0), j + 4), slice(max(i - 3, 0), i + 4))
        peaks.append(img[sl].max())
        assert (lab[sl] == 0).all()
    assert max(peaks) > 100


def test_passes_ingest_and_preprocessing(tmp_path):
    from sdpm_cli.ingest import load_study
    from sdpm_cli.preprocess.prepare import prepare
    from sdpm_cli.synth.writers import write_nifti

    c = case(3)
    p = write_nifti(c.image, tmp_path / "atlas_case.nii.gz")
    study = load_study(p)
    assert np.array_equal(arr(study.image), arr(c.image))
    prep = prepare(study.image)
    assert prep.brain.any() and 700.0 < prep.brain_volume_ml < 2200.0


def test_missing_nilearn_is_a_usage_error(monkeypatch):
    import importlib.util

    from sdpm_cli.synth.atlas import template

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nilearn" else real(name, *a))
    with pytest.raises(UsageError, match="needs nilearn"):
        template.atlas_dir()


def test_cli_family_atlas(run_cli, tmp_path):
    out = tmp_path / "fam_b"
    code, stdout, _ = run_cli("synth", out, "--family", "atlas", "--cases", "1", "--seed", "7", "--test-fraction", "1",
                              "--matrix", "128", "--thickness", "5", "--format", "both", "-q")
    assert code == 0, stdout
    man = json.loads((out / "manifest.json").read_text())
    assert man["family"] == "atlas" and man["config"]["family"] == "atlas"
    assert man["cases"][0]["family"] == "atlas" and man["cases"][0]["split"] == "test"
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["name"] == "SDPMSynthAtlas" and "Louis Collins" in dj["licence"]
    lab = arr(sitk.ReadImage(str(out / man["cases"][0]["label"])))
    assert len(list((out / man["cases"][0]["dicom"]).glob("*.dcm"))) == man["cases"][0]["protocol"]["n_slices"]
    assert man["cases"][0]["voxels"]["hemorrhage"] == int((lab == 2).sum())
    code, _, err = run_cli("synth", tmp_path / "x", "--family", "phantom", "-q")
    assert code == 2 and "unknown family" in err
