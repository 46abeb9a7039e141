"""`sdpm qc --cross-check`: dicom2nifti reads the chosen series a second time and must agree with the ingest."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.ingest import IngestOptions, IngestRules, load_study
from sdpm_cli.ingest import crosscheck as cc

from .dicom_factory import write_series


def _oblique_iop(yaw: float = 0.2, pitch: float = 0.1) -> tuple[float, ...]:
    r = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    c = np.array([-math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), math.sin(pitch)])
    return tuple(float(x) for x in np.concatenate([r, c]))


@pytest.mark.parametrize("kw", [
    {},  # clean axial
    {"iop": _oblique_iop()},  # rotated in-plane and tipped: an oblique series
    {"iop": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0), "instance_order": "reversed", "file_names": "shuffled"},
    {"padding_value": 0},  # padding: the ingest's air (-1000) where dicom2nifti keeps -1024
    {"transfer_syntax": "rle"},
], ids=["axial", "oblique", "flipped-shuffled", "padding", "rle"])
def test_dicom2nifti_agrees_on_clean_series(tmp_path, kw):
    write_series(tmp_path, **kw)
    st = load_study(tmp_path)
    r = cc.cross_check(st.image, [s.path for s in st.slices])
    assert r.ok, r.line
    assert r.line == "cross-check: dicom2nifti agrees (size, spacing, origin, direction, voxels)"


def test_dicom2nifti_refuses_shuffled_instance_numbers_the_ingest_accepts(tmp_path):
    """A real difference between the readers: dicom2nifti groups slices by InstanceNumber (to find 4-D
    stacks), so numbers out of step with the positions split the series; the ingest sorts by position."""
    write_series(tmp_path, instance_order="shuffled")
    st = load_study(tmp_path)
    r = cc.cross_check(st.image, [s.path for s in st.slices])
    assert not r.ok and r.quantity == "reader"
    assert r.line.startswith("cross-check: dicom2nifti refuses the series that the ingest accepts: stacks of unequal size")


def test_conventions_differ_but_agree_after_reorientation(tmp_path):
    """dicom2nifti writes RAS/LAS NIfTI; read back it is not our array or direction until reoriented."""
    write_series(tmp_path)
    st = load_study(tmp_path)
    theirs = cc.read_with_dicom2nifti([s.path for s in st.slices])
    assert not np.allclose(theirs.GetDirection(), st.image.GetDirection())  # y flipped by the NIfTI convention
    assert cc.compare_images(st.image, theirs, unmeasured=np.zeros(sitk.GetArrayViewFromImage(st.image).shape, bool),
                             air_hu=-1000).ok


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    write_series(d, iop=_oblique_iop())
    st = load_study(d)
    return st.image, cc.read_with_dicom2nifti([s.path for s in st.slices])


def _copy(img: sitk.Image, arr: np.ndarray | None = None) -> sitk.Image:
    out = sitk.GetImageFromArray(sitk.GetArrayFromImage(img) if arr is None else arr)
    out.CopyInformation(img)
    return out


def test_comparator_refuses_a_shifted_origin(pair):
    ours, theirs = pair
    bad = _copy(ours)
    bad.SetOrigin(tuple(np.add(ours.GetOrigin(), (0.0, 0.01, 0.0))))
    r = cc.compare_images(bad, theirs)
    assert not r.ok and r.quantity == "origin" and "differ by 0.01 mm" in r.line
    assert r.line.startswith("cross-check: dicom2nifti disagrees on origin: ")
    bad.SetOrigin(tuple(np.add(ours.GetOrigin(), (0.0, 0.0005, 0.0))))  # inside the 1e-3 mm tolerance
    assert cc.compare_images(bad, theirs).ok


def test_comparator_refuses_a_flipped_axis(pair):
    ours, theirs = pair
    flipped = _copy(ours, sitk.GetArrayFromImage(ours)[:, :, ::-1].copy())  # voxels flipped, geometry kept
    r = cc.compare_images(flipped, theirs)
    assert not r.ok and r.quantity == "voxels" and "differ" in r.detail
    d = np.array(ours.GetDirection()).reshape(3, 3)
    d[:, 0] *= -1  # geometry flipped, voxels kept: the image now sits elsewhere
    moved = _copy(ours)
    moved.SetDirection(tuple(d.ravel()))
    assert not cc.compare_images(moved, theirs).ok


def test_comparator_refuses_direction_spacing_size_and_one_voxel(pair):
    ours, theirs = pair
    d = np.array(ours.GetDirection()).reshape(3, 3)
    t = 1e-3  # a small rotation about z, well inside the same orientation code
    rot = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    turned = _copy(ours)
    turned.SetDirection(tuple((rot @ d).ravel()))
    assert cc.compare_images(turned, theirs).quantity == "direction"
    wide = _copy(ours)
    wide.SetSpacing(tuple(np.add(ours.GetSpacing(), (0.0, 0.0, 0.01))))
    assert cc.compare_images(wide, theirs).quantity == "spacing"
    assert cc.compare_images(ours[:, :, 1:], theirs).quantity == "size"
    arr = sitk.GetArrayFromImage(ours)
    arr[5, 20, 30] += 1
    r = cc.compare_images(_copy(ours, arr), theirs)
    assert r.quantity == "voxels" and "1 of " in r.detail
    assert cc.compare_images(_copy(ours, arr), theirs, cc.CrossCheckTolerance(hu=1.0)).ok


def test_dicom2nifti_settings_forced_strict_and_restored(tmp_path):
    import dicom2nifti.settings as s

    write_series(tmp_path, skip=(10,))  # a missing slice
    files = sorted(tmp_path.iterdir())
    s.disable_validate_slice_increment()  # someone else in the process loosened it
    try:
        with pytest.raises(cc.Dicom2niftiRefused, match="uneven slice spacing"):
            cc.read_with_dicom2nifti(files)
        assert s.validate_slice_increment is False  # left as we found it
    finally:
        s.enable_validate_slice_increment()


def test_qc_cross_check_pass_line(tmp_path, run_cli):
    write_series(tmp_path)
    code, out, err = run_cli("qc", tmp_path, "--cross-check")
    assert code == 0, err
    assert "cross-check: dicom2nifti agrees (size, spacing, origin, direction, voxels)" in out
    code, out, _ = run_cli("qc", tmp_path, "--cross-check", "--json")
    assert code == 0 and json.loads(out)["cross_check"]["ok"] is True


def test_qc_cross_check_disagreement_exits_3_naming_the_quantity(tmp_path, run_cli, monkeypatch):
    write_series(tmp_path)
    real = cc.read_with_dicom2nifti

    def shifted(files):
        img = real(files)
        img.SetOrigin(tuple(np.add(img.GetOrigin(), (0.5, 0.0, 0.0))))
        return img

    monkeypatch.setattr(cc, "read_with_dicom2nifti", shifted)
    code, out, err = run_cli("qc", tmp_path, "--cross-check")
    assert code == 3
    assert "verdict: reject" in out and "cross-check: dicom2nifti disagrees on origin" in err + out
    assert "Traceback" not in err


def test_qc_cross_check_dicom2nifti_refuses_what_we_accept(tmp_path, run_cli, monkeypatch):
    write_series(tmp_path)

    def refuse(files):
        raise cc.Dicom2niftiRefused("uneven slice spacing (SLICE_INCREMENT_INCONSISTENT)")

    monkeypatch.setattr(cc, "read_with_dicom2nifti", refuse)
    code, out, err = run_cli("qc", tmp_path, "--cross-check")
    assert code == 3
    assert "dicom2nifti refuses the series that the ingest accepts: uneven slice spacing" in out + err


def test_qc_cross_check_both_refuse_a_tilt(tmp_path, run_cli):
    write_series(tmp_path, tilt_deg=15)
    code, out, err = run_cli("qc", tmp_path, "--cross-check")
    assert code == 3 and "gantry tilt of 15.0 degrees" in out
    assert "cross-check: dicom2nifti refuses series 2 (HEAD 5mm) too: gantry-tilted" in out
    code, out, err = run_cli("qc", tmp_path, "--cross-check", "--correct-tilt")
    assert code == 0 and "cross-check: skipped: the series was resampled (tilt)" in out


def test_qc_cross_check_refuses_a_volume_file(tmp_path, run_cli):
    img = sitk.Image(8, 8, 8, sitk.sitkInt16)
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    code, _, err = run_cli("qc", tmp_path / "ct.nii.gz", "--cross-check")
    assert code == 2 and "--cross-check compares two DICOM readers" in err


@pytest.mark.fixtures
def test_real_philips_geometry_agrees(dcm_qa_ct):
    """The Philips phantom fails our HU and anatomy gates (not a head); its geometry and voxels still
    agree with dicom2nifti once the HU gate is widened and the anatomy check is left out."""
    from sdpm_cli.ingest import _survey
    from sdpm_cli.ingest.volume import load_candidate

    opts = IngestOptions(rules=dataclasses.replace(IngestRules(), soft_tissue_peak_range=(0.0, 120.0)))
    result, cands = _survey(dcm_qa_ct / "Philips_S21570", opts)
    st = load_candidate(next(c for c in cands if c.info is result.chosen.info), opts, result)
    r = cc.cross_check(st.image, [s.path for s in st.slices], opts.rules)
    assert r.ok, r.line


@pytest.mark.fixtures
def test_real_ge_tilt_refused_by_both(dcm_qa_ct, run_cli):
    code, out, _ = run_cli("qc", dcm_qa_ct / "GE", "--cross-check")
    assert code == 3 and "cross-check: dicom2nifti refuses series 2 too: gantry-tilted" in out
    code, out, _ = run_cli("qc", dcm_qa_ct / "Philips_S21570", "--cross-check")
    assert code == 3 and "dicom2nifti reads series 201 (STD BRAIN 5MM) (512x512x28 voxels) that the ingest refuses" in out
