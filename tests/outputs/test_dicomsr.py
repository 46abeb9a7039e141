"""DICOM SR (TID 1500): the report's numbers written with highdicom and read back unchanged;
references to the SEG and the source CT; dciodvfy finds no error in the SR or the SEG."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared DICOM factory
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/outputs, for the SEG test helpers
from ingest.dicom_factory import write_series  # noqa: E402
from test_dicomseg import native_grid  # noqa: E402

from sdpm_cli.errors import InputRejected, UsageError  # noqa: E402
from sdpm_cli.outputs.dicomseg import write_dicom_seg  # noqa: E402
from sdpm_cli.outputs.dicomsr import build_dicom_sr, read_dicom_sr, write_dicom_sr  # noqa: E402
from sdpm_cli.outputs.report import build_report, lesion_rows  # noqa: E402
from sdpm_cli.pipeline import ClassVolume  # noqa: E402

N = 8
SHA = "5e" * 32
MODEL = {"name": "sdpm-test-model", "version": "2.1.0", "sha256": SHA, "intended_use": "research"}
RUN = {"mode": "out", "preset": "fast", "seed": 0, "device": "cpu", "runtime_s": 1.0}
INFARCT_VOXELS, HEMORRHAGE_VOXELS = 3 * 10 * 10, 1 * 3 * 3


def two_lesions(grid: sitk.Image, hemorrhage: bool = True) -> sitk.Image:
    arr = np.zeros(sitk.GetArrayViewFromImage(grid).shape, np.uint8)
    arr[2:5, 10:20, 30:40] = 1  # infarct: 300 voxels
    if hemorrhage:
        arr[6, 3:6, 4:7] = 2  # hemorrhage: 9 voxels
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(grid)
    return img


def fake_probs(labels: sitk.Image) -> np.ndarray:
    """Class probabilities [2, Z, Y, X]: a confident infarct, an unsure hemorrhage (low confidence)."""
    arr = sitk.GetArrayFromImage(labels)
    probs = np.zeros((2,) + arr.shape, np.float32)
    probs[0][arr == 1] = 0.95
    probs[1][arr == 2] = 0.3
    return probs


CALIBRATION = {name: SimpleNamespace(interval=lambda v, band: (0.8 * v, 1.25 * v + band)) for name in ("infarct", "hemorrhage")}


def make_report(labels: sitk.Image) -> dict:
    """The report as the pipeline builds it: rows from lesion_rows, ClassVolumes with an interval."""
    rows = lesion_rows(labels, probs=fake_probs(labels), calibration=CALIBRATION)
    rows[0]["location"] = "intra-axial"  # what classify_lesions adds when the CT is at hand
    total = {n: sum(r["volume_ml"] for r in rows if r["class"] == n) for n in ("infarct", "hemorrhage")}
    volumes = {
        "infarct": ClassVolume("infarct", 1, total["infarct"], (0.9 * total["infarct"], 1.2 * total["infarct"]), 8,
                               band_ml=0.5, level=0.95, low_confidence=False),
        "hemorrhage": ClassVolume("hemorrhage", 2, total["hemorrhage"], None, 8, band_ml=0.0, low_confidence=True),
    }  # fmt: skip
    return build_report(volumes=volumes, lesions=rows, series={}, warnings=[], model=MODEL, run=RUN, software={},
                        interval_source="synthetic heads (test)", created_utc="2025-01-01T00:00:00Z")  # fmt: skip


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("sr")
    paths = write_series(root / "ct", n_slices=N)
    labels = two_lesions(native_grid(paths))
    seg_path = write_dicom_seg(labels, paths, root / "seg.dcm", algorithm_name=MODEL["name"], algorithm_version=MODEL["version"])
    report = make_report(labels)
    sr_path = write_dicom_sr(report, paths, seg_path, root / "sr.dcm")
    return SimpleNamespace(root=root, paths=paths, labels=labels, seg_path=seg_path, report=report, sr_path=sr_path,
                           seg=pydicom.dcmread(str(seg_path)), src=pydicom.dcmread(str(paths[0]), stop_before_pixels=True))  # fmt: skip


def test_volumes_and_intervals_read_back_equal_to_the_report(case):
    got = read_dicom_sr(case.sr_path)
    rep = case.report
    voxel_ml = 4.0 * 5.5 * 5.0 / 1000  # the factory's pixels (5.5 x 4 mm) and 5 mm slices
    assert [r["n_voxels"] for r in rep["lesions"]] == [INFARCT_VOXELS, HEMORRHAGE_VOXELS]
    for name in ("infarct", "hemorrhage"):
        want, have = rep["volumes"][name], got["volumes"][name]
        assert have["volume_ml"] == want["volume_ml"] and have["unit"] == "ml"
        assert have["low_confidence"] is want["low_confidence"]
        if want["ci95_ml"] is None:
            assert have["ci95_ml"] is None and have["interval_level"] is None
        else:
            assert have["ci95_ml"] == pytest.approx(want["ci95_ml"], rel=1e-12)
            assert have["ci95_ml"][0] <= have["volume_ml"] <= have["ci95_ml"][1]
            assert have["interval_level"] == want["interval_level"] == 0.95
            assert have["interval_covers"] == want["interval_covers"] == "true lesion volume, calibrated on synthetic heads (test)"
    assert got["volumes"]["infarct"]["volume_ml"] == pytest.approx(INFARCT_VOXELS * voxel_ml)
    assert got["volumes"]["hemorrhage"]["volume_ml"] == pytest.approx(HEMORRHAGE_VOXELS * voxel_ml)

    assert [r["id"] for r in got["lesions"]] == [r["id"] for r in rep["lesions"]] == [1, 2]
    for want, have in zip(rep["lesions"], got["lesions"]):
        assert (have["class"], have["label"]) == (want["class"], want["label"])
        assert have["volume_ml"] == want["volume_ml"] and have["abc2_ml"] == want["abc2_ml"]
        assert have["ci95_ml"] == pytest.approx(want["ci95_ml"], rel=1e-12)
        assert have["ci95_ml"][0] <= have["volume_ml"] <= have["ci95_ml"][1]
        assert have["low_confidence"] is want["low_confidence"]
        assert have.get("location") == want.get("location")
    # the inputs are not trivial: one confident and one unsure lesion, one located
    assert [r["low_confidence"] for r in got["lesions"]] == [False, True]
    assert got["lesions"][0]["location"] == "intra-axial" and "location" not in got["lesions"][1]


def test_references_study_seg_and_source_series(case):
    got = read_dicom_sr(case.sr_path)
    sr = pydicom.dcmread(str(case.sr_path))
    src, seg = case.src, case.seg
    assert sr.Modality == "SR" and sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert got["study_instance_uid"] == str(src.StudyInstanceUID) == str(seg.StudyInstanceUID)
    assert got["series_instance_uid"] not in (str(src.SeriesInstanceUID), str(seg.SeriesInstanceUID))
    assert sr.SeriesDescription == "sdpm volumes"
    assert sr.PatientID == src.PatientID and sr.PatientName == src.PatientName
    assert "InstitutionName" not in sr  # nothing identifying beyond the patient/study modules
    numbers = {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}
    for entry in [*got["volumes"].values(), *got["lesions"]]:
        assert entry["segment"] == {"sop_instance_uid": str(seg.SOPInstanceUID), "segment_number": numbers[entry["class"]],
                                    "source_series_uid": str(src.SeriesInstanceUID)}  # fmt: skip
    evidence = {(se, ins) for _, se, ins in got["evidence"]}
    sources = {(str(d.SeriesInstanceUID), str(d.SOPInstanceUID))
               for d in (pydicom.dcmread(str(p), stop_before_pixels=True) for p in case.paths)}  # fmt: skip
    assert evidence == sources | {(str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID))}
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence  # one study: the CT series and the SEG series
    assert len(study.ReferencedSeriesSequence) == 2


def _num_items(item):
    for child in getattr(item, "ContentSequence", []):
        if child.ValueType == "NUM":
            yield child
        yield from _num_items(child)


def test_every_measurement_names_the_algorithm_and_its_sha256(case):
    sr = pydicom.dcmread(str(case.sr_path))
    nums = list(_num_items(sr))
    measurements = [n for n in nums if n.RelationshipType == "CONTAINS"]
    assert len(measurements) == 2 + 2 * 2  # class volumes; per lesion volume and ABC/2
    for m in measurements:
        mods = {(c.ConceptNameCodeSequence[0].CodeValue, c.get("TextValue")) for c in m.ContentSequence}
        assert ("111001", MODEL["name"]) in mods and ("111003", MODEL["version"]) in mods
        assert ("111002", f"model_sha256={SHA}") in mods
        assert ("111002", "intended_use=research") in mods  # the model's word on its use, on every figure
    got = read_dicom_sr(case.sr_path)
    assert {e["algorithm"]["sha256"] for e in [*got["volumes"].values(), *got["lesions"]]} == {SHA}
    assert {e["algorithm"]["intended_use"] for e in [*got["volumes"].values(), *got["lesions"]]} == {"research"}
    # the observer is the device, made by "sdpm"
    root = {c.ConceptNameCodeSequence[0].CodeValue: c for c in sr.ContentSequence}
    assert root["121005"].ConceptCodeSequence[0].CodeValue == "121007"  # Observer Type = Device
    assert root["121013"].TextValue == MODEL["name"] and root["121014"].TextValue == "sdpm"
    assert root["121058"].ConceptCodeSequence[0].CodeValue == "303653007"  # procedure: CT of head


def test_tracking_uids_are_stable_for_one_seg(case):
    a = read_dicom_sr(case.sr_path)
    b = build_dicom_sr(case.report, case.paths, case.seg)
    b_path = b.save_as(str(case.root / "again.dcm")) or case.root / "again.dcm"
    b = read_dicom_sr(b_path)
    assert b["sop_instance_uid"] != a["sop_instance_uid"]
    uids = [e["tracking_uid"] for e in [*a["volumes"].values(), *a["lesions"]]]
    assert uids == [e["tracking_uid"] for e in [*b["volumes"].values(), *b["lesions"]]]
    assert len(set(uids)) == len(uids) == 4
    assert [e["tracking_identifier"] for e in a["lesions"]] == ["lesion 1", "lesion 2"]


@pytest.mark.parametrize("include_empty", [True, False])
def test_a_class_with_no_lesion(tmp_path, include_empty):
    paths = write_series(tmp_path / "ct", n_slices=N)
    labels = two_lesions(native_grid(paths), hemorrhage=False)
    seg_path = write_dicom_seg(labels, paths, tmp_path / "seg.dcm", include_empty_segments=include_empty)
    report = make_report(labels)
    assert report["volumes"]["hemorrhage"]["volume_ml"] == 0.0 and len(report["lesions"]) == 1
    got = read_dicom_sr(write_dicom_sr(report, paths, seg_path, tmp_path / "sr.dcm"))
    hem = got["volumes"]["hemorrhage"]
    assert hem["volume_ml"] == 0.0 and [r["class"] for r in got["lesions"]] == ["infarct"]
    if include_empty:  # the SEG describes the empty segment: the group points at it
        assert hem["segment"]["segment_number"] == 2
    else:  # no segment to point at: a measurement group without an ROI
        assert hem["segment"] is None
        assert got["volumes"]["infarct"]["segment"]["segment_number"] == 1


def test_no_overwrite_without_force_and_nothing_partial(case, tmp_path):
    dest = tmp_path / "sr.dcm"
    dest.write_text("keep")
    with pytest.raises(UsageError):
        write_dicom_sr(case.report, case.paths, case.seg_path, dest)
    assert dest.read_text() == "keep"
    write_dicom_sr(case.report, case.paths, case.seg, dest, force=True)  # a Dataset works as well as a path
    assert pydicom.dcmread(str(dest)).Modality == "SR"
    # a refusal while building leaves no file and no temporary behind
    other = tmp_path / "other.dcm"
    with pytest.raises(ValueError, match="sha256"):
        write_dicom_sr(case.report, case.paths, case.seg, other, model_sha256="00" * 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.dcm"]


def test_foreign_seg_is_refused(case, tmp_path):
    elsewhere = write_series(tmp_path / "other", n_slices=N, study_uid="1.2.826.0.1.3680043.8.498.77", series_number=3)
    with pytest.raises(InputRejected, match="another study"):
        build_dicom_sr(case.report, elsewhere, case.seg)
    same_study = write_series(tmp_path / "other2", n_slices=N, series_number=4)
    with pytest.raises(InputRejected, match="not made from this source series"):
        build_dicom_sr(case.report, same_study, case.seg)


def _dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    out = subprocess.run(["dciodvfy", str(path)], check=False, capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_accepts_the_sr_and_the_seg(case, tmp_path):
    empty = write_dicom_seg(native_grid(case.paths), case.paths, tmp_path / "empty_seg.dcm")
    for path in (case.sr_path, case.seg_path, empty):
        errors, _ = _dciodvfy_errors(path)
        assert errors == [], f"{path.name}: {errors[:5]}"
