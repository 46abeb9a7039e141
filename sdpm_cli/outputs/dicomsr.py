"""DICOM Structured Report (SR) output: the report's volumes as a TID 1500 Measurement Report.

Why: PACS and reporting tools read measurements from an SR, not from our JSON. The SR carries
exactly the numbers of the JSON report (`outputs.report`), which is its only source, so the SR,
the JSON and the CSV can never disagree. It is a Comprehensive 3D SR encoded by highdicom.

Tree (see docs/DICOM_SR.md):
- TID 1500 Measurement Report, procedure reported SCT 303653007 "Computed tomography of head",
  observer = device (TID 1004: manufacturer "sdpm", the model name, a UID derived from the model).
- One group per class (infarct, hemorrhage), TID 1411 Volumetric ROI Measurements, tracking
  identifier "class <name>", finding category SCT 49755003 "Morphologically abnormal structure",
  finding type the SEG's segment type (SCT 55641003 Infarct / 50960005 Hemorrhage), referencing the
  class's segment of the SEG as a whole (Referenced Segment + Source Series For Segmentation: the
  segment, not per-frame references, which also holds for a segment with no frames). A class the
  SEG has no segment for still gets its group (volume 0 mL) as a TID 1501 group without an ROI.
- One group per lesion, tracking identifier "lesion <id>" and a tracking UID derived from the SEG's
  SOP Instance UID and the lesion id (stable for one SEG). The SEG holds one segment per class, not
  per lesion, so a lesion group references its class segment: per-lesion regions are identified by
  their tracking id within the class segment (the lesion is that 26-connected component; the JSON
  report holds its centroid and slice range).
- Measurements (TID 300): Volume SCT 118565006 in UCUM "ml", method DCM 126030 "Sum of segmented
  voxel method for volume"; per lesion also the ABC/2 estimate as DCM 121221 "Volume of ellipsoid",
  method DCM 126029 "LWH method for volume of ellipsoid" (ABC/2 approximates pi/6 * A*B*C).
  Every measurement carries TID 4019 Algorithm Identification: name, version, and the parameter
  "model_sha256=<hex>".
- The calibrated interval: TID 310 Measurement Properties of the Volume, "-, range of lower
  measurement uncertainty" (SCT 371885007) = volume - lower and "+, range of upper measurement
  uncertainty" (SCT 371886008) = upper - volume, in ml (the measurement's own unit; CID 225). This is
  the standard's place for an asymmetric range around a measured value; a reader gets the bounds
  back as volume - / + the two offsets. TID 310 has no row for the coverage level, so the level and
  what it covers are Algorithm Parameters of that measurement: "interval_level=0.95" and
  "interval_covers=<the report's interval_covers>".
- Qualitative evaluations (CODE): no standard concept names "this algorithm's estimate is of low
  confidence" or the location classes of postprocess.location (extra-axial spans subdural and
  epidural; none maps one-to-one onto an SCT body structure), so they use a private coding scheme
  "99SDPM" (PS3.16 section 8: "99" designators are local; declared in the Coding Scheme
  Identification Sequence): name 99SDPM LOWCONF "Low confidence estimate" with value SCT 373066001
  Yes / 373067005 No, and name 99SDPM LOCCLASS "Lesion location class" with values 99SDPM
  INTRAAXIAL / INTRAVENTRICULAR / EXTRAAXIAL / SUBARACHNOID. Absent in the report -> absent here.

Evidence: the SEG and every source CT instance (Current Requested Procedure Evidence Sequence, via
highdicom). Patient and study modules come from the source CT (same Study Instance UID), a new
series "sdpm volumes"; nothing identifying is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from sdpm_cli import __version__
from sdpm_cli.errors import InputRejected
from sdpm_cli.labels import CLASSES
from sdpm_cli.outputs.atomic import atomic_path, check_writable
from sdpm_cli.outputs.dicomseg import CATEGORY, SEGMENT_TYPES, _read_sources
from sdpm_cli.postprocess.location import LOCATION_CLASSES

PRIVATE_SCHEME = "99SDPM"
PROCEDURE = ("303653007", "SCT", "Computed tomography of head")
VOLUME = ("118565006", "SCT", "Volume")
ELLIPSOID_VOLUME = ("121221", "DCM", "Volume of ellipsoid")
VOXEL_METHOD = ("126030", "DCM", "Sum of segmented voxel method for volume")
LWH_METHOD = ("126029", "DCM", "LWH method for volume of ellipsoid")
ML = ("ml", "UCUM", "milliliter")
LOWER_UNCERTAINTY = ("371885007", "SCT", "-, range of lower measurement uncertainty")
UPPER_UNCERTAINTY = ("371886008", "SCT", "+, range of upper measurement uncertainty")
LOW_CONFIDENCE = ("LOWCONF", PRIVATE_SCHEME, "Low confidence estimate")
YES, NO = ("373066001", "SCT", "Yes"), ("373067005", "SCT", "No")
LOCATION = ("LOCCLASS", PRIVATE_SCHEME, "Lesion location class")
LOCATION_CODES = {name: (name.replace("-", "").upper(), PRIVATE_SCHEME, name) for name in LOCATION_CLASSES}
SHA_PARAM, LEVEL_PARAM, COVERS_PARAM = "model_sha256=", "interval_level=", "interval_covers="
USE_PARAM = "intended_use="  # the model's own word on its use (report model.intended_use), e.g. research
CLASS_PREFIX, LESION_PREFIX = "class ", "lesion "
SERIES_DESCRIPTION = "sdpm volumes"


def _code(triple):
    from pydicom.sr.coding import Code

    return Code(*triple)


def _uid(*parts: Any) -> str:
    """A UID that is a pure function of `parts` (a name-based UUID under the 2.25 root, PS3.5 B.2):
    stable tracking and device identifiers."""
    import hashlib
    import uuid

    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=5).int}"


def segment_numbers(seg_dataset) -> dict[int, int]:
    """Class label -> segment number in a SEG, matched by segmented property type (as read_dicom_seg)."""
    out = {}
    for s in getattr(seg_dataset, "SegmentSequence", []):
        code = str(s.SegmentedPropertyTypeCodeSequence[0].CodeValue)
        for label, triple in SEGMENT_TYPES.items():
            if triple[0] == code:
                out.setdefault(label, int(s.SegmentNumber))
    return out


def _measurement(name, value: float, method, algo, ci: Optional[Sequence[float]] = None):
    """TID 300 measurement in ml; `ci` (lower, upper) becomes the TID 310 uncertainty offsets."""
    import highdicom as hd

    props = None
    if ci is not None:
        props = hd.sr.MeasurementProperties()
        for triple, offset in ((LOWER_UNCERTAINTY, value - float(ci[0])), (UPPER_UNCERTAINTY, float(ci[1]) - value)):
            props.append(hd.sr.NumContentItem(
                name=_code(triple), value=float(offset), unit=_code(ML),
                relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES))  # fmt: skip
    return hd.sr.Measurement(name=_code(name), value=float(value), unit=_code(ML), method=_code(method),
                             properties=props, algorithm_id=algo)  # fmt: skip


def _algorithm(model: Mapping[str, str], ci, level, covers: str):
    import highdicom as hd

    params = [SHA_PARAM + model["sha256"]] + ([USE_PARAM + model["intended_use"]] if model["intended_use"] else [])
    if ci is not None:
        params += [LEVEL_PARAM + repr(float(level)), COVERS_PARAM + (covers or "true lesion volume")]
    return hd.sr.AlgorithmIdentification(name=model["name"], version=model["version"], parameters=params)


def _flag(value: bool):
    import highdicom as hd

    return hd.sr.QualitativeEvaluation(name=_code(LOW_CONFIDENCE), value=_code(YES if value else NO))


def _group(tracking: str, uid: str, label: int, segment, measurements, evaluations):
    """A TID 1411 group on the class segment, or a TID 1501 group where the SEG has no segment."""
    import highdicom as hd

    common = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=tracking),
        finding_category=_code(CATEGORY),
        finding_type=_code(SEGMENT_TYPES[label]),
        measurements=measurements,
        qualitative_evaluations=evaluations or None,
    )
    if segment is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment, **common)


def _model(report: Mapping, name: Optional[str], version: Optional[str], sha256: Optional[str]) -> dict[str, str]:
    """The report's model block; explicit arguments may fill gaps but never contradict it."""
    rep = dict(report.get("model", {}))
    out = {}
    for key, given in (("name", name), ("version", version), ("sha256", sha256)):
        have = str(rep.get(key, "") or "")
        if given is not None and have and str(given) != have:
            raise ValueError(f"model {key} {given!r} disagrees with the report's {have!r}")
        out[key] = have or str(given or "")
    out["intended_use"] = str(rep.get("intended_use", "") or "")
    out["name"] = out["name"] or "sdpm"
    out["version"] = out["version"] or "unknown"
    return out


def build_dicom_sr(
    report: Mapping[str, Any],
    source_files: Sequence[Path],
    seg_dataset,
    *,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    model_sha256: Optional[str] = None,
    series_number: int = 902,
    series_description: str = SERIES_DESCRIPTION,
    series_instance_uid: Optional[str] = None,
    sop_instance_uid: Optional[str] = None,
):
    """The SR (highdicom Comprehensive3DSR) of `report`, referencing `seg_dataset` and the source CT.

    report: as `outputs.report.build_report` makes it (validated here). source_files: the CT series
    the SEG was made from. seg_dataset: the SEG (pydicom Dataset) written by `write_dicom_seg`.
    model_*: default to the report's model block and must agree with it.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from sdpm_cli.outputs.report import validate_report

    validate_report(report)
    model = _model(report, model_name, model_version, model_sha256)
    sources = _read_sources(source_files)
    src = sources[0]
    seg_uid = str(seg_dataset.SOPInstanceUID)
    if str(seg_dataset.StudyInstanceUID) != str(src.StudyInstanceUID):
        raise InputRejected("the SEG belongs to another study than the source series")
    seg_series = {str(s.SeriesInstanceUID) for s in getattr(seg_dataset, "ReferencedSeriesSequence", [])}
    if seg_series and str(src.SeriesInstanceUID) not in seg_series:
        raise InputRejected("the SEG was not made from this source series")
    numbers = segment_numbers(seg_dataset)

    def segment(label: int):
        if label not in numbers:
            return None
        return hd.sr.ReferencedSegment(
            sop_class_uid=str(seg_dataset.SOPClassUID), sop_instance_uid=seg_uid, segment_number=numbers[label],
            source_series=hd.sr.SourceSeriesForSegmentation(str(src.SeriesInstanceUID)))  # fmt: skip

    groups = []
    levels = {}
    for label, name in CLASSES.items():
        v = report["volumes"][name]
        ci, level = v.get("ci95_ml"), v.get("interval_level") or 0.95
        levels[name] = level
        algo = _algorithm(model, ci, level, v.get("interval_covers", ""))
        evals = [_flag(v["low_confidence"])] if "low_confidence" in v else []
        groups.append(_group(CLASS_PREFIX + name, _uid(seg_uid, "class", name), label, segment(label),
                             [_measurement(VOLUME, v["volume_ml"], VOXEL_METHOD, algo, ci)], evals))  # fmt: skip
    for row in report["lesions"]:
        ci = row.get("ci95_ml")
        level = levels[row["class"]]
        covers = report["volumes"][row["class"]].get("interval_covers", "")
        algo = _algorithm(model, ci, level, covers)
        measurements = [_measurement(VOLUME, row["volume_ml"], VOXEL_METHOD, algo, ci)]
        if row.get("abc2_ml") is not None:
            measurements.append(_measurement(ELLIPSOID_VOLUME, row["abc2_ml"], LWH_METHOD, _algorithm(model, None, None, "")))
        evals = []
        if row.get("location") in LOCATION_CODES:
            evals.append(hd.sr.QualitativeEvaluation(name=_code(LOCATION), value=_code(LOCATION_CODES[row["location"]])))
        if "low_confidence" in row:
            evals.append(_flag(row["low_confidence"]))
        groups.append(_group(f"{LESION_PREFIX}{row['id']}", _uid(seg_uid, "lesion", row["id"]), int(row["label"]),
                             segment(int(row["label"])), measurements, evals))  # fmt: skip

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_uid("sdpm-device", model["name"], model["version"], model["sha256"]),
        name=model["name"], manufacturer_name="sdpm", model_name=model["name"])  # fmt: skip
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.DCM.Device,
                                                      observer_identifying_attributes=device))  # fmt: skip
    content = hd.sr.MeasurementReport(observation_context=context, procedure_reported=_code(PROCEDURE),
                                      imaging_measurements=groups)  # fmt: skip
    scheme = hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME, name="sdpm local codes", responsible_organization="sdpm")  # fmt: skip
    try:
        return hd.sr.Comprehensive3DSR(
            evidence=[*sources, seg_dataset],  # the source first: patient and study come from the CT
            content=content,
            series_instance_uid=series_instance_uid or generate_uid(),
            series_number=series_number,
            sop_instance_uid=sop_instance_uid or generate_uid(),
            instance_number=1,
            manufacturer="sdpm",
            manufacturer_model_name=model["name"],
            software_versions=f"sdpm {__version__}",
            device_serial_number="none",
            series_description=series_description,
            is_complete=True,
            coding_schemes=[scheme],
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputRejected(f"cannot encode the DICOM SR: {str(exc).splitlines()[0]}") from None


def write_dicom_sr(
    report: Mapping[str, Any],
    source_files: Sequence[Path],
    seg,
    dest,
    *,
    force: bool = False,
    **kwargs: Any,
) -> Path:
    """Write `build_dicom_sr` atomically to `dest` (refused when it exists, unless force).

    seg: the SEG as a pydicom Dataset or a path to the file `write_dicom_seg` wrote."""
    import pydicom

    check_writable(dest, force)
    seg_dataset = seg if isinstance(seg, pydicom.Dataset) else pydicom.dcmread(str(seg), stop_before_pixels=True)
    sr = build_dicom_sr(report, source_files, seg_dataset, **kwargs)
    with atomic_path(dest, force) as tmp:
        sr.save_as(str(tmp), enforce_file_format=True)
    return Path(dest)


# ---- reading back ---------------------------------------------------------------------------------


def _name(item) -> tuple[str, str]:
    c = item.ConceptNameCodeSequence[0]
    return str(c.CodeValue), str(c.CodingSchemeDesignator)


def _items(container, triple, value_type: Optional[str] = None) -> list:
    """The direct children of a content item with concept name `triple` (and value type)."""
    return [i for i in getattr(container, "ContentSequence", [])
            if _name(i) == tuple(triple[:2]) and (value_type is None or i.ValueType == value_type)]  # fmt: skip


def _num(item) -> float:
    mv = item.MeasuredValueSequence[0]
    return float(mv.FloatingPointValue) if "FloatingPointValue" in mv else float(mv.NumericValue)


def _read_measurement(item) -> dict:
    """value, interval, algorithm name/version/parameters of one NUM content item."""
    out: dict = {"value": _num(item), "unit": str(item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue)}
    lo, hi = _items(item, LOWER_UNCERTAINTY), _items(item, UPPER_UNCERTAINTY)
    out["ci95_ml"] = [out["value"] - _num(lo[0]), out["value"] + _num(hi[0])] if lo and hi else None
    params = [str(i.TextValue) for i in _items(item, ("111002", "DCM", ""))]
    out["algorithm"] = {
        "name": next((str(i.TextValue) for i in _items(item, ("111001", "DCM", ""))), None),
        "version": next((str(i.TextValue) for i in _items(item, ("111003", "DCM", ""))), None),
        "sha256": next((p[len(SHA_PARAM):] for p in params if p.startswith(SHA_PARAM)), None),
        "intended_use": next((p[len(USE_PARAM):] for p in params if p.startswith(USE_PARAM)), None),
        "parameters": params,
    }
    level = next((p[len(LEVEL_PARAM):] for p in params if p.startswith(LEVEL_PARAM)), None)
    out["interval_level"] = float(level) if level is not None else None
    out["interval_covers"] = next((p[len(COVERS_PARAM):] for p in params if p.startswith(COVERS_PARAM)), None)
    return out


def read_dicom_sr(path) -> dict:
    """Read an SR written here back (highdicom): per-class and per-lesion volumes, intervals, flags,
    the referenced SEG segments, the evidence and the algorithm - for round-trip checks and tools."""
    import highdicom as hd

    sr = hd.sr.srread(str(path))
    (measurements,) = _items(sr, ("126010", "DCM"), "CONTAINER")  # Imaging Measurements
    out: dict = {
        "study_instance_uid": str(sr.StudyInstanceUID),
        "series_instance_uid": str(sr.SeriesInstanceUID),
        "sop_instance_uid": str(sr.SOPInstanceUID),
        "evidence": [(str(st), str(se), str(ins)) for st, se, ins, _ in sr.get_evidence()],
        "volumes": {},
        "lesions": [],
    }
    label_of = {v[0]: k for k, v in SEGMENT_TYPES.items()}
    loc_of = {v[0]: k for k, v in LOCATION_CODES.items()}
    for group in _items(measurements, ("125007", "DCM"), "CONTAINER"):  # Measurement Group
        tracking = str(_items(group, ("112039", "DCM"))[0].TextValue)
        finding = _items(group, ("121071", "DCM"))[0]  # Finding
        label = label_of[str(finding.ConceptCodeSequence[0].CodeValue)]
        entry: dict = {"class": CLASSES[label], "label": label, "tracking_identifier": tracking,
                       "tracking_uid": str(_items(group, ("112040", "DCM"))[0].UID), "segment": None}  # fmt: skip
        seg_ref = _items(group, ("121191", "DCM"), "IMAGE")  # Referenced Segment
        if seg_ref:
            ref = seg_ref[0].ReferencedSOPSequence[0]
            series = _items(group, ("121232", "DCM"))  # Source Series For Segmentation
            entry["segment"] = {"sop_instance_uid": str(ref.ReferencedSOPInstanceUID),
                                "segment_number": int(ref.ReferencedSegmentNumber),
                                "source_series_uid": str(series[0].UID) if series else None}  # fmt: skip
        m = _read_measurement(_items(group, VOLUME, "NUM")[0])
        entry.update(volume_ml=m["value"], ci95_ml=m["ci95_ml"], interval_level=m["interval_level"],
                     interval_covers=m["interval_covers"], algorithm=m["algorithm"], unit=m["unit"])  # fmt: skip
        for item in _items(group, LOW_CONFIDENCE, "CODE"):
            entry["low_confidence"] = str(item.ConceptCodeSequence[0].CodeValue) == YES[0]
        for item in _items(group, LOCATION, "CODE"):
            entry["location"] = loc_of.get(str(item.ConceptCodeSequence[0].CodeValue))
        if tracking.startswith(CLASS_PREFIX):
            out["volumes"][entry["class"]] = entry
        else:
            entry["id"] = int(tracking[len(LESION_PREFIX):])
            abc2 = _items(group, ELLIPSOID_VOLUME, "NUM")
            entry["abc2_ml"] = _num(abc2[0]) if abc2 else None
            out["lesions"].append(entry)
    out["lesions"].sort(key=lambda r: r["id"])
    return out
