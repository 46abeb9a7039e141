"""Anatomy checks: not a head is refused, an out-of-domain head is warned about (console, report, QC).

Every input is built here: synthetic heads (sdpm_cli.synth, clinical domain, 128 matrix), the DICOM
factory's head, a chest-like volume, a skull-stripped copy of a head; the real GE head when present.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy import ndimage
import pydicom
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.ingest import load_study
from sdpm_cli.ingest.anatomy import DOMAIN_FLAGS, flags_set, parse_age
from sdpm_cli.preprocess import brain_mask_array
from sdpm_cli.synth import SynthConfig, generate_case
from sdpm_cli.synth import config as synth_config
from tests.ingest.dicom_factory import SeriesSpec, write_series

CFG = SynthConfig(matrix=128, thicknesses_mm=(5.0,), thickness_weights=(1.0,), domain="clinical", lesion="none")
ANATOMY_WARNINGS = ("child", "infant-like", "contrast-enhanced", "skull defect", "metal", "cut at the top", "skull-stripped")


def _nifti(img: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(img, str(path))
    return path


def _head(seed: int = 1, **domain) -> sitk.Image:
    """A clinical synthetic head; `domain` overrides its DomainRanges (same seed: same head otherwise)."""
    if not domain:
        return generate_case(seed, CFG).image
    orig = synth_config.DOMAINS["clinical"]
    synth_config.DOMAINS["clinical"] = dataclasses.replace(orig, **domain)
    try:
        return generate_case(seed, CFG).image
    finally:
        synth_config.DOMAINS["clinical"] = orig


def _tag_series(folder: Path, **tags) -> None:
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        for k, v in tags.items():
            setattr(ds, k, v)
        ds.save_as(f)


def test_parse_age():
    assert parse_age("007Y") == 7 and parse_age("018M") == 1.5 and parse_age("045Y") == 45
    assert parse_age("") is None and parse_age("adult") is None


@pytest.mark.parametrize("seed", [1, 2])
def test_normal_synthetic_head_raises_no_flag(tmp_path, seed):
    st = load_study(_nifti(_head(seed), tmp_path / "head.nii.gz"))
    assert flags_set(st.domain) == [], st.domain
    assert not any(w for w in st.warnings for key in ANATOMY_WARNINGS if key in w), st.warnings
    assert set(DOMAIN_FLAGS) <= set(st.domain) and st.domain["measures"]["ring_mm"] >= 50


def test_factory_dicom_head_raises_no_flag(tmp_path):
    write_series(tmp_path / "dcm", SeriesSpec())
    _tag_series(tmp_path / "dcm", BodyPartExamined="HEAD", PatientAge="045Y")
    st = load_study(tmp_path / "dcm")
    assert st.warnings == [] and flags_set(st.domain) == [] and st.domain["age_years"] == 45


@pytest.mark.fixtures
@pytest.mark.slow
def test_real_ge_head_raises_no_flag(dcm_qa_ct):
    st = load_study(dcm_qa_ct / "GE", correct_tilt=True, resample_gaps=True)
    assert flags_set(st.domain) == [], st.domain["measures"]


def test_chest_like_volume_is_not_a_head(tmp_path, run_cli):
    # 40 x 5 mm slices of a 320 x 220 mm body: fat-free soft tissue, two lungs at -800, a spine and ribs
    nz, ny, nx, px = 40, 128, 128, 2.7
    yy, xx = (np.mgrid[:ny, :nx] - 63.5) * px
    body = (xx / 160) ** 2 + (yy / 110) ** 2 <= 1
    hu = np.where(body, 40.0, -1000.0)
    for side in (-1, 1):
        hu[((xx - side * 70) / 55) ** 2 + (yy / 75) ** 2 <= 1] = -800.0
    hu[np.hypot(xx, yy - 75) <= 18] = 700.0  # vertebral body
    ring = np.abs(np.sqrt((xx / 150) ** 2 + (yy / 100) ** 2) - 1) * 100 <= 3  # ribs, gaps every 30 degrees
    ring &= (np.degrees(np.arctan2(yy, xx)) % 30) < 20
    hu[ring & body] = 900.0
    img = sitk.GetImageFromArray(np.repeat(hu[None], nz, 0).astype(np.int16))
    img.SetSpacing((px, px, 5.0))
    p = _nifti(img, tmp_path / "chest.nii.gz")
    with pytest.raises(InputRejected, match="not a head"):
        load_study(p)
    code, out, err = run_cli("qc", p)
    assert code == 3 and "not a head" in err and "Traceback" not in err


def test_body_part_chest_refused(tmp_path):
    write_series(tmp_path / "dcm", SeriesSpec())
    _tag_series(tmp_path / "dcm", BodyPartExamined="CHEST")
    with pytest.raises(InputRejected, match="not a head: BodyPartExamined is CHEST"):
        load_study(tmp_path / "dcm")


def test_infant_like_attenuation_warned(tmp_path):
    img = _head(1, wm_hu=(9.0, 10.0), gm_wm_contrast_hu=(3.0, 4.0), csf_hu=(-4.0, 0.0), csf_below_wm_hu=8.0)
    st = load_study(_nifti(img, tmp_path / "infant.nii.gz"))
    assert st.domain["infant_attenuation"] and any("infant-like" in w for w in st.warnings)
    assert st.domain["measures"]["parenchyma_median_hu"] < 22


def _paint_sinuses(img: sitk.Image, hu_value: float = 200.0, radius_mm: float = 6.0) -> sitk.Image:
    """Dense tubes (enhanced sinus/vein-like, 6 mm radius) along the brain's posterior edge and centre."""
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    sx, sy, _ = img.GetSpacing()
    brain = brain_mask_array(arr, img.GetSpacing()).astype(bool)
    yy, xx = np.mgrid[: arr.shape[1], : arr.shape[2]]
    for z in np.flatnonzero(brain.sum(axis=(1, 2)) > 0.5 * brain.sum(axis=(1, 2)).max()):
        ys, xs = np.nonzero(brain[z])
        cx = int(np.median(xs))
        for cy in (ys.max() - radius_mm / sy - 1, ys.mean()):  # posterior edge (sagittal sinus) and centre
            arr[z][np.hypot((yy - cy) * sy, (xx - cx) * sx) <= radius_mm] = hu_value
    out = sitk.GetImageFromArray(arr.astype(np.int16))
    out.CopyInformation(img)
    return out


def test_contrast_like_sinuses_warned(tmp_path):
    st = load_study(_nifti(_paint_sinuses(_head(1)), tmp_path / "contrast.nii.gz"))
    assert st.domain["contrast"] and any("contrast-enhanced" in w for w in st.warnings), st.domain["measures"]


def _strip(img: sitk.Image) -> tuple[sitk.Image, np.ndarray]:
    arr = sitk.GetArrayFromImage(img)
    brain = brain_mask_array(arr, img.GetSpacing()).astype(bool)
    out = sitk.GetImageFromArray(np.where(brain, arr, 0).astype(np.int16))
    out.CopyInformation(img)
    return out, brain


def test_child_age_in_console_report_and_preview(tmp_path, run_cli, tiny_model):
    write_series(tmp_path / "dcm", SeriesSpec())
    _tag_series(tmp_path / "dcm", PatientAge="007Y", BodyPartExamined="HEAD")
    rep = tmp_path / "r.json"
    code, out, err = run_cli("segment", tmp_path / "dcm", "--model", tiny_model, "--out", tmp_path / "m.nii.gz",
                             "--report", rep, "--preview", tmp_path / "qc.png", "--quiet")
    assert code == 0, err
    assert "child (7 years old" in err and "validated on adults" in err
    r = json.loads(rep.read_text())
    assert r["validated_domain"]["child"] is True and r["validated_domain"]["contrast"] is False
    assert any("child" in w for w in r["warnings"])
    assert (tmp_path / "qc.png").stat().st_size > 0


def test_preview_banner_only_when_out_of_domain():
    from sdpm_cli.outputs.preview import domain_banner, render_preview

    assert domain_banner({k: False for k in DOMAIN_FLAGS}) == "" and domain_banner(None) == ""
    banner = domain_banner({"child": True, "contrast": True})
    assert banner.startswith("OUTSIDE VALIDATED DOMAIN: child, contrast")
    img = sitk.GetImageFromArray(np.zeros((3, 16, 16), np.int16))
    lab = sitk.GetImageFromArray(np.zeros((3, 16, 16), np.uint8))
    fig = render_preview(img, lab, volumes_ml={"infarct": 0.0, "hemorrhage": 0.0}, banner=banner)
    assert banner in [t.get_text() for t in fig.texts]


def test_skull_stripped_nifti_segmented_inside_brain(tmp_path, run_cli, tiny_model):
    stripped, brain = _strip(_head(1))
    p = _nifti(stripped, tmp_path / "stripped.nii.gz")
    with pytest.raises(InputRejected, match="not a head"):  # without the detection it has no skull
        from sdpm_cli.ingest.anatomy import assess
        from sdpm_cli.ingest.rules import IngestRules

        assess(stripped, IngestRules(), "x")
    mask, rep = tmp_path / "m.nii.gz", tmp_path / "r.json"
    code, out, err = run_cli("segment", p, "--model", tiny_model, "--mode", "union", "--out", mask,
                             "--report", rep, "--quiet")
    assert code == 0, err
    assert "skull-stripped volume detected" in err
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    assert (lab > 0).any() and not ((lab > 0) & ~brain).any()
    assert json.loads(rep.read_text())["validated_domain"]["skull_stripped"] is True
    # --skull-stripped on an ordinary head is refused with the reason
    code, out, err = run_cli("segment", _nifti(_head(1), tmp_path / "h.nii.gz"), "--model", tiny_model,
                             "--skull-stripped", "--out", tmp_path / "m2.nii.gz", "--quiet")
    assert code == 3 and "not skull-stripped" in err


def test_a_stripped_volume_that_kept_its_inner_table_is_refused_with_the_reason(tmp_path, run_cli, tiny_model):
    """A mask grown over the inner table leaves a bone rim: not recognised as stripped, and the HU
    check (no air) refuses it - saying that it looks stripped and why it was not taken as such."""
    img = _head(1)
    arr = sitk.GetArrayFromImage(img)
    brain = brain_mask_array(arr, img.GetSpacing()).astype(bool)
    grown = np.stack([ndimage.binary_dilation(b, iterations=4) for b in brain])  # ~4 px: into the skull
    out = sitk.GetImageFromArray(np.where(grown, arr, 0).astype(np.int16))
    out.CopyInformation(img)
    code, _, err = run_cli("segment", _nifti(out, tmp_path / "rim.nii.gz"), "--model", tiny_model,
                           "--out", tmp_path / "m.nii.gz", "--quiet")
    assert code == 3 and "Traceback" not in err
    assert "as in a skull-stripped volume" in err and "bone" in err
    assert not (tmp_path / "m.nii.gz").exists()


def test_user_brain_mask(tmp_path, run_cli, tiny_model):
    img = _head(1)
    p = _nifti(img, tmp_path / "head.nii.gz")
    half = brain_mask_array(sitk.GetArrayFromImage(img), img.GetSpacing())
    half[:, :, : half.shape[2] // 2] = 0
    m = sitk.GetImageFromArray(half)
    m.CopyInformation(img)
    good = _nifti(m, tmp_path / "brain.nii.gz")
    code, out, err = run_cli("segment", p, "--model", tiny_model, "--mode", "union", "--brain-mask", good,
                             "--out", tmp_path / "m.nii.gz", "--quiet")
    assert code == 0, err
    assert "brain mask from the user" in err
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.nii.gz")))
    assert not ((lab > 0) & (half == 0)).any()
    wrong = sitk.GetImageFromArray(half[:, ::2, ::2].copy())
    wrong.SetSpacing(tuple(s * 2 for s in img.GetSpacing()[:2]) + (img.GetSpacing()[2],))
    for bad, why in ((_nifti(wrong, tmp_path / "wrong.nii.gz"), "grid differs"),):
        code, out, err = run_cli("segment", p, "--model", tiny_model, "--brain-mask", bad,
                                 "--out", tmp_path / "m3.nii.gz", "--quiet")
        assert code == 3 and why in err and "Traceback" not in err
    nonbin = sitk.GetImageFromArray((half * 7).astype(np.uint8))
    nonbin.CopyInformation(img)
    code, out, err = run_cli("segment", p, "--model", tiny_model, "--brain-mask", _nifti(nonbin, tmp_path / "nb.nii.gz"),
                             "--out", tmp_path / "m4.nii.gz", "--quiet")
    assert code == 3 and "not binary" in err


def test_patient_position_is_read_and_decubitus_is_recognised(tmp_path):
    write_series(tmp_path / "dcm", SeriesSpec())
    _tag_series(tmp_path / "dcm", PatientPosition="HFDL")
    st = load_study(tmp_path / "dcm")
    assert st.series.patient_position == "HFDL" and st.series.decubitus
    assert st.series.to_dict()["patient_position"] == "HFDL"
    _tag_series(tmp_path / "dcm", PatientPosition="HFS")
    assert not load_study(tmp_path / "dcm").series.decubitus
