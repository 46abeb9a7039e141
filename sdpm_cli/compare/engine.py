"""`compare_studies`: two scans of one patient -> registration, matched lesions, change and calls.

Both studies go through the normal ingest and `segment_study` (one loaded model). Volumes always
come from each scan's own native-grid mask; the follow-up's labels are carried onto the baseline
grid (nearest neighbour through the rigid registration) only to match lesions and draw the preview.
`compare_scans` is the model-free core (tests inject label images through `scan_from_labels`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import SimpleITK as sitk

from sdpm_cli.compare.change import (Call, ExpansionRules, VolumeChange, hemorrhage_expansion, absolute_growth,
                                     infarct_growth, new_blood)
from sdpm_cli.compare.match import LesionGroup, match_lesions
from sdpm_cli.compare.register import Registration, RegistrationRules, check_registration, register_rigid, resample_to
from sdpm_cli.errors import InputRejected
from sdpm_cli.labels import CLASSES

LABEL_OF = {name: c for c, name in CLASSES.items()}


@dataclass(frozen=True)
class CompareOptions:
    registration: RegistrationRules = RegistrationRules()
    expansion: ExpansionRules = ExpansionRules()
    allow_different_patients: bool = False
    min_overlap_voxels: int = 1


@dataclass
class Scan:
    """One segmented scan, reduced to what a comparison needs (native grid)."""

    image_hu: sitk.Image
    labels: sitk.Image
    volumes: dict[str, Any]  # class name -> ClassVolume (volume_ml, ci95_ml)
    lesions: list[dict]  # report rows (outputs.report.lesion_rows): id, class, label, volume_ml[, ci95_ml, location]
    lesion_ids: np.ndarray  # int32 [z, y, x]: the row id of each lesion voxel (0 = none)
    series: dict = field(default_factory=dict)
    subject_key: Optional[str] = None  # one-way patient key from the DICOM header (None: volume file)
    warnings: list[str] = field(default_factory=list)
    segmentation: Any = None

    def lesion_id_image(self) -> sitk.Image:
        img = sitk.GetImageFromArray(self.lesion_ids.astype(np.int32))
        img.CopyInformation(self.labels)
        return img

    def ivh_ml(self) -> float:
        """Intraventricular blood: hemorrhage lesions located intraventricular (postprocess.location)."""
        return float(sum(r["volume_ml"] for r in self.lesions
                         if r["class"] == "hemorrhage" and r.get("location") == "intraventricular"))


@dataclass
class LesionChange:
    group: LesionGroup
    name: str
    change: VolumeChange
    calls: dict[str, Call]


@dataclass
class ClassChange:
    name: str
    change: VolumeChange
    calls: dict[str, Call]


@dataclass
class Comparison:
    baseline: Scan
    followup: Scan
    registration: Registration
    classes: dict[str, ClassChange]
    lesions: list[LesionChange]
    same_patient: dict
    followup_labels_on_baseline: sitk.Image
    followup_hu_on_baseline: sitk.Image
    rules: ExpansionRules
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- scans
def lesion_id_map(labels: sitk.Image, rows: list[dict]) -> np.ndarray:
    """Voxel -> report row id, using the components `lesion_rows` numbered (same order, same sizes)."""
    from sdpm_cli.labels import as_label_array
    from sdpm_cli.postprocess.components import label_components

    arr, _ = as_label_array(labels)
    comps = [c for c in label_components(arr) if c.label in CLASSES]
    if len(comps) != len(rows):
        raise RuntimeError("lesion rows do not match the label image")
    out = np.zeros(arr.shape, np.int32)
    for c, r in zip(comps, rows):
        if (c.label, c.n_voxels) != (r["label"], r["n_voxels"]):
            raise RuntimeError("lesion rows do not match the label image")
        out[c.crop][c.mask] = r["id"]
    return out


def subject_key_of(study) -> Optional[str]:
    """The ingest's one-way subject key of a DICOM study (Study.subject_key); None for a volume file."""
    return getattr(study, "subject_key", None)


def _series_dict(study) -> dict:
    s = getattr(study, "series", None)
    return s.to_dict() if hasattr(s, "to_dict") else {}


def scan_from_segmentation(seg) -> Scan:
    """A Scan from `pipeline.segment_study`'s result (lesion rows with locations and intervals)."""
    from sdpm_cli.outputs.report import segmentation_lesion_rows

    rows = segmentation_lesion_rows(seg)
    return Scan(image_hu=seg.study.image, labels=seg.labels, volumes=dict(seg.volumes), lesions=rows,
                lesion_ids=lesion_id_map(seg.labels, rows), series=_series_dict(seg.study),
                subject_key=subject_key_of(seg.study), warnings=list(seg.warnings), segmentation=seg)


def scan_from_labels(image_hu: sitk.Image, labels: sitk.Image, *, calibration: Optional[Mapping[str, Any]] = None,
                     subject_key: Optional[str] = None) -> Scan:
    """A Scan from a CT and a label image (no model): volumes counted from the labels; with
    `calibration` (class name -> ClassCalibration) each volume and lesion gets its interval (band 0)."""
    from sdpm_cli.outputs.report import lesion_rows
    from sdpm_cli.pipeline import ClassVolume
    from sdpm_cli.postprocess.lesions import voxel_volume_ml

    arr = sitk.GetArrayViewFromImage(labels)
    vml = voxel_volume_ml(labels)
    cal = dict(calibration or {})
    volumes = {}
    for c, name in CLASSES.items():
        v = float(np.count_nonzero(arr == c)) * vml
        ci = cal[name].interval(v, 0.0) if name in cal else None
        volumes[name] = ClassVolume(name=name, label=c, volume_ml=v, ci95_ml=ci, n_samples=0)
    rows = lesion_rows(labels, image_hu)
    for r in rows:
        if r["class"] in cal:
            r["ci95_ml"] = list(cal[r["class"]].interval(r["volume_ml"], 0.0))
    return Scan(image_hu=image_hu, labels=labels, volumes=volumes, lesions=rows, lesion_ids=lesion_id_map(labels, rows),
                subject_key=subject_key)


# ---------------------------------------------------------------------------------------- compare
def _ci(v) -> Optional[tuple[float, float]]:
    ci = v.get("ci95_ml") if isinstance(v, Mapping) else getattr(v, "ci95_ml", None)
    return None if ci is None else (float(ci[0]), float(ci[1]))


def _calls(name: str, vc: VolumeChange, rules: ExpansionRules) -> dict[str, Call]:
    if name == "hemorrhage":
        return {"expansion": hemorrhage_expansion(vc, rules),
                f"growth_{rules.hemorrhage_large_ml:g}ml".replace(".", "_"): absolute_growth(vc, rules.hemorrhage_large_ml)}
    return {"expansion": infarct_growth(vc, rules)}


def same_patient_check(baseline_key: Optional[str], followup_key: Optional[str], allow_different: bool) -> dict:
    """Compare the one-way subject keys; refuse different ones unless allowed. No key is ever output."""
    if baseline_key is None or followup_key is None:
        return {"checked": False, "same": None,
                "note": "not checked: a volume file (NIfTI, NRRD, MetaImage) has no patient header"}
    same = baseline_key == followup_key
    if not same and not allow_different:
        raise InputRejected("baseline and follow-up belong to different patients (patient ID/name/birth date differ "
                            "in the DICOM headers); give --allow-different-patients to compare them anyway")
    return {"checked": True, "same": same,
            "note": "same patient (DICOM patient ID, name and birth date)" if same
            else "different patients in the DICOM headers (compared because --allow-different-patients was given)"}


def compare_scans(base: Scan, follow: Scan, options: CompareOptions = CompareOptions()) -> Comparison:
    """Register, match and measure the change of two segmented scans (see the module docstring)."""
    t0 = time.perf_counter()
    same = same_patient_check(base.subject_key, follow.subject_key, options.allow_different_patients)
    reg = register_rigid(base.image_hu, follow.image_hu, rules=options.registration)
    check_registration(reg)
    t_reg = time.perf_counter() - t0

    ids_on_base = sitk.GetArrayFromImage(resample_to(follow.lesion_id_image(), base.labels, reg.transform, labels=True))
    labels_on_base = resample_to(follow.labels, base.labels, reg.transform, labels=True)
    hu_on_base = resample_to(follow.image_hu, base.image_hu, reg.transform, labels=False, default=-1000.0)
    b_rows = {r["id"]: r for r in base.lesions}
    f_rows = {r["id"]: r for r in follow.lesions}
    groups = match_lesions(base.lesion_ids, ids_on_base, {i: r["label"] for i, r in b_rows.items()},
                           {j: r["label"] for j, r in f_rows.items()}, options.min_overlap_voxels)

    rules = options.expansion
    classes = {}
    for name in CLASSES.values():
        vc = VolumeChange(float(base.volumes[name].volume_ml), float(follow.volumes[name].volume_ml),
                          _ci(base.volumes[name]), _ci(follow.volumes[name]))
        calls = _calls(name, vc, rules)
        if name == "hemorrhage":
            calls["new_intraventricular"] = new_blood(base.ivh_ml(), follow.ivh_ml(), "intraventricular blood at "
                                                      "follow-up, none at baseline (lesion location)")
        classes[name] = ClassChange(name, vc, calls)

    lesions = []
    for g in groups:
        name = CLASSES[g.label]
        rb, rf = [b_rows[i] for i in g.baseline_ids], [f_rows[j] for j in g.followup_ids]
        vc = VolumeChange(sum(r["volume_ml"] for r in rb), sum(r["volume_ml"] for r in rf),
                          _sum_ci(rb), _sum_ci(rf))
        lesions.append(LesionChange(g, name, vc, _calls(name, vc, rules)))
    warnings = []
    if not same["checked"]:
        warnings.append("same-patient check skipped: " + same["note"].split(": ", 1)[-1])
    return Comparison(base, follow, reg, classes, lesions, same, labels_on_base, hu_on_base, rules, warnings,
                      {"register_match_s": time.perf_counter() - t0, "register_s": t_reg})


def _sum_ci(rows: list[dict]) -> Optional[tuple[float, float]]:
    """Interval of a group's volume: the sum of its lesions' intervals (0 for no lesion); None if any lacks one."""
    if any(r.get("ci95_ml") is None for r in rows):
        return None
    return (float(sum(r["ci95_ml"][0] for r in rows)), float(sum(r["ci95_ml"][1] for r in rows)))


def compare_studies(baseline: Union[str, Path, Any], followup: Union[str, Path, Any], *, model=None,
                    segment: Optional["SegmentOptions"] = None, device: str = "auto",  # noqa: F821
                    options: CompareOptions = CompareOptions(), **changes) -> Comparison:
    """Ingest both studies, check they are one patient, segment both (one model), then `compare_scans`.

    model: a LoadedModel, a checkpoint path or None (the shipped model). segment: how both are
    segmented (SegmentOptions, its ingest options applied to both; keyword `changes` replace its
    fields, e.g. mode="out")."""
    from sdpm_cli.ingest import load_study
    from sdpm_cli.pipeline import LoadedModel, SegmentOptions, load_model, segment_study

    t0 = time.perf_counter()
    warnings: list[str] = []
    lm = model
    if not isinstance(model, LoadedModel):
        lm, w = load_model(model, device)
        warnings += w
    seg_opts = (segment or SegmentOptions()).with_(**changes)
    seg_opts.check()
    studies = [s if hasattr(s, "image") else load_study(s, options=seg_opts.ingest) for s in (baseline, followup)]
    same_patient_check(*(subject_key_of(s) for s in studies), options.allow_different_patients)  # before segmenting
    segs = [segment_study(s, model=lm, options=seg_opts) for s in studies]
    t_seg = time.perf_counter() - t0
    scans = [scan_from_segmentation(s) for s in segs]
    cmp = compare_scans(scans[0], scans[1], options)
    for tag, s in zip(("baseline", "follow-up"), scans):
        cmp.warnings += [f"{tag}: {w}" for w in dict.fromkeys(s.warnings)]
    cmp.warnings = warnings + cmp.warnings
    cmp.timings.update({"segment_s": t_seg, "total_s": time.perf_counter() - t0})
    return cmp
