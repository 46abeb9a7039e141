"""The JSON (and per-lesion CSV) report of one segmentation, for people and for pipelines.

`build_report` assembles it from explicit inputs, so the same document comes out of `sdpm segment`,
batch runs and tests; `validate_report` checks it against `REPORT_SCHEMA` (a JSON Schema, checked
here by a small built-in validator so jsonschema is not a dependency). Patient identifiers appear
only under "phi", and only when the caller passes include_phi=True (`--include-phi`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from sdpm_cli import __version__
from sdpm_cli.ingest.anatomy import DOMAIN_FLAGS
from sdpm_cli.labels import CLASSES
from sdpm_cli.modes import MODES
from sdpm_cli.outputs.atomic import write_json, write_text
from sdpm_cli.postprocess.location import LOCATION_CLASSES

SCHEMA_ID = "sdpm-report/1"

# DICOM keywords (and their snake_case forms) that identify a patient or an encounter.
PHI_KEYS = frozenset(
    k.lower()
    for k in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge",
        "PatientAddress", "OtherPatientIDs", "OtherPatientNames", "AccessionNumber", "InstitutionName",
        "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
        "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "ContentDate",
        "patient_name", "patient_id", "birth_date", "patient_birth_date", "accession", "accession_number",
        "institution", "institution_name", "study_date",
    )
)  # fmt: skip

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR = {"type": "string"}

REPORT_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "sdpm segmentation report",
    "type": "object",
    "required": ["schema", "sdpm_version", "created_utc", "volumes", "lesions", "series", "warnings", "model", "run", "software"],
    "additionalProperties": False,
    "properties": {
        "schema": {"enum": [SCHEMA_ID]},
        "sdpm_version": _STR,
        "created_utc": _STR,
        "volumes": {
            "type": "object",
            "required": list(CLASSES.values()),
            "additionalProperties": False,
            "properties": {
                name: {
                    "type": "object",
                    "required": ["label", "volume_ml", "ci95_ml", "n_samples", "n_lesions"],
                    "additionalProperties": False,
                    "properties": {
                        "label": {"enum": [label]},
                        "volume_ml": {"type": "number", "minimum": 0},
                        "ci95_ml": {"type": ["array", "null"], "items": _NUM, "minItems": 2, "maxItems": 2},
                        "n_samples": {"type": ["integer", "null"], "minimum": 0},
                        "n_lesions": {"type": "integer", "minimum": 0},
                        # optional (postprocess.uncertainty): what ci95_ml covers and how sure the model is
                        "interval_level": _NUM_OR_NULL,
                        "interval_covers": _STR,
                        "band_ml": {"type": "number", "minimum": 0},
                        "sample_range_ml": {"type": ["array", "null"], "items": _NUM, "minItems": 2, "maxItems": 2},
                        "low_confidence": {"type": "boolean"},
                    },
                }
                for label, name in CLASSES.items()
            },
        },
        "lesions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "class", "label", "volume_ml", "abc2_ml", "centroid_mm", "slice_first", "slice_last", "n_voxels"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "class": {"enum": list(CLASSES.values())},
                    "label": {"enum": list(CLASSES)},
                    "volume_ml": {"type": "number", "minimum": 0},
                    "abc2_ml": {"type": ["number", "null"], "minimum": 0},
                    "centroid_mm": {"type": "array", "items": _NUM, "minItems": 3, "maxItems": 3},
                    "slice_first": {"type": "integer", "minimum": 0},
                    "slice_last": {"type": "integer", "minimum": 0},
                    "n_voxels": {"type": "integer", "minimum": 1},
                    # optional (present when the CT was available): postprocess.location
                    "location": {"enum": list(LOCATION_CLASSES)},
                    "location_reason": _STR,
                    "location_evidence": {"type": "object", "additionalProperties": _NUM_OR_NULL},
                    # optional (when the probabilities were available): postprocess.uncertainty
                    "mean_prob": {"type": "number", "minimum": 0, "maximum": 1},
                    "core_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                    "ci95_ml": {"type": ["array", "null"], "items": _NUM, "minItems": 2, "maxItems": 2},
                    "low_confidence": {"type": "boolean"},
                },
            },
        },
        "series": {"type": "object"},
        "warnings": {"type": "array", "items": _STR},
        # optional (postprocess.darkness): reported infarcts as dark as CSF where the other side is not -
        # possibly old; each is also a warning
        "dark_infarcts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["volume_ml", "csf_dark_share", "slices"],
                "properties": {
                    "volume_ml": {"type": "number", "minimum": 0},
                    "median_hu": _NUM,
                    "parenchyma_hu": _NUM,
                    "csf_dark_share": {"type": "number", "minimum": 0, "maximum": 1},
                    "asymmetric_csf_dark_share": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "slices": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                },
            },
        },
        # optional: the anatomy checks (ingest.anatomy): True = outside what the model was validated on
        "validated_domain": {
            "type": "object",
            "required": list(DOMAIN_FLAGS),
            "properties": {
                **{k: {"type": "boolean"} for k in DOMAIN_FLAGS},
                "age_years": _NUM_OR_NULL,
                "body_part_examined": _STR,
                "measures": {"type": ["object", "null"]},
            },
        },
        "model": {
            "type": "object",
            "required": ["name", "version", "sha256"],
            "properties": {
                "name": _STR,
                "version": _STR,
                "sha256": {"type": "string", "pattern": "^([0-9a-f]{64})?$"},
                "intended_use": _STR,  # the model header's validation.intended_use ("research")
                "caveat": _STR,  # ... and validation.caveat: what its answers must not be used for, and why
            },
        },
        "run": {
            "type": "object",
            "required": ["mode", "preset", "seed", "device", "runtime_s"],
            "properties": {
                "mode": {"enum": list(MODES)},
                "preset": _STR,
                "seed": {"type": "integer"},
                "device": _STR,
                "runtime_s": {"type": ["number", "null"], "minimum": 0},
                # what ran the network: torch, or ONNX Runtime with the model's companion ("onnxruntime+torch":
                # reports of 2026-12-06, when a gated run used both)
                "network_runtime": {"enum": ["torch", "onnxruntime", "onnxruntime+torch", ""]},
                # the stochastic modes' gate (InferenceConfig.gate_dict) and the slices it ran them on
                "gating": {
                    "type": "object",
                    "required": ["enabled", "threshold", "min_area_mm2", "margin", "margin_threshold",
                                 "stochastic_slices", "brain_slices"],
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                        "min_area_mm2": {"type": "number", "minimum": 0},
                        "margin": {"type": "integer", "minimum": 0},
                        "margin_threshold": {"type": "number", "minimum": 0, "maximum": 1},
                        "stochastic_slices": {"type": "integer", "minimum": 0},
                        "brain_slices": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
        "software": {"type": "object", "additionalProperties": _STR},
        "phi": {"type": "object"},
    },
}


# ---- a small JSON Schema validator (the subset REPORT_SCHEMA uses) ---------------------------------

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(value: Any, schema: Mapping, path: str = "$") -> list[str]:
    """Every violation of `schema` by `value`, as 'json.path: problem' strings."""
    errs: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__} {value!r}"[:200]]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "minimum" in schema:
        if value < schema["minimum"]:
            errs.append(f"{path}: {value} is below {schema['minimum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "maximum" in schema:
        if value > schema["maximum"]:
            errs.append(f"{path}: {value} is above {schema['maximum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errs.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errs.append(f"{path}: {len(value)} items")
        if "items" in schema:
            for i, v in enumerate(value):
                errs += schema_errors(v, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in value:
                errs.append(f"{path}: missing '{k}'")
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errs += schema_errors(v, props[k], f"{path}.{k}")
            elif extra is False:
                errs.append(f"{path}: unexpected key '{k}'")
            elif isinstance(extra, dict):
                errs += schema_errors(v, extra, f"{path}.{k}")
    return errs


def validate_report(report: Mapping) -> None:
    """Raise ValueError naming the first problems if the report breaks REPORT_SCHEMA or leaks PHI."""
    errs = schema_errors(report, REPORT_SCHEMA)
    outside = {k: v for k, v in report.items() if k != "phi"} if isinstance(report, Mapping) else report
    errs += [f"$.{where}: patient identifier '{k}' outside 'phi'" for where, k in _phi_keys_in(outside)]
    if errs:
        raise ValueError("invalid report: " + "; ".join(errs[:5]))


def _phi_keys_in(obj: Any, where: str = "") -> list[tuple[str, str]]:
    found = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if str(k).lower() in PHI_KEYS:
                found.append((where or "$", str(k)))
            found += _phi_keys_in(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _phi_keys_in(v, f"{where}[{i}]")
    return found


# ---- building the report --------------------------------------------------------------------------


def lesion_rows(labels: sitk.Image, image_hu: Optional[sitk.Image] = None, brain: Optional[sitk.Image] = None,
                probs: Optional[np.ndarray] = None, calibration: Optional[Mapping[str, Any]] = None) -> list[dict]:
    """Per-lesion rows for the report: `postprocess.lesions.measure_lesions` plus an ABC/2 estimate.

    Lesions are 26-connected components per class (largest first within a class); centroid_mm is
    the physical centre (patient LPS, mm) and slice_first/slice_last the 0-based z indices of the
    label volume, i.e. positions in the source series' volume order. With the CT (`image_hu`, on the
    labels' grid) every row also gets its location class, the reason and the evidence
    (`postprocess.location.classify_lesions`; `brain` is the intracranial mask, computed if absent).
    With the class probabilities (`probs` [C, Z, Y, X] on the labels' grid) every row gets its
    confidence: mean probability, the fraction of its voxels with p >= 0.8 (`core_fraction`: where
    diffusion samples agree), and, with `calibration` (class name -> ClassCalibration), the
    calibrated interval of its volume and a `low_confidence` flag (postprocess.uncertainty).
    """
    from sdpm_cli.postprocess.abc2 import abc2_ml
    from sdpm_cli.labels import as_label_array
    from sdpm_cli.postprocess.components import label_components
    from sdpm_cli.postprocess.lesions import measure_lesions

    arr, _ = as_label_array(labels)
    comps = label_components(arr)  # labelled once: volumes, ABC/2 masks and locations share them
    measured = measure_lesions(labels, components=comps)
    spacing = labels.GetSpacing()
    masks = {c.key: c.mask for c in comps}
    located = {}
    if image_hu is not None and measured.lesions:
        from sdpm_cli.postprocess.location import classify_lesions

        located = {r.key: r for r in classify_lesions(labels, image_hu, brain, components=comps)}
    rows = []
    for les in sorted(measured.lesions, key=lambda les: (les.label, les.id)):
        if les.label not in CLASSES:
            continue  # other label values are refused upstream; never reported as a class
        sub = masks.get(les.key)
        rows.append(
            {
                "id": len(rows) + 1,
                "class": les.name,
                "label": les.label,
                "volume_ml": float(les.volume_ml),
                "abc2_ml": abc2_ml(sub, spacing) if sub is not None else None,
                "centroid_mm": [round(float(c), 2) for c in les.centroid_mm],
                "slice_first": int(les.slices[0]),
                "slice_last": int(les.slices[1]),
                "n_voxels": int(les.n_voxels),
            }
        )
        loc = located.get(les.key)
        if loc is not None:
            rows[-1].update(loc.to_dict())
        if probs is not None and sub is not None:
            rows[-1].update(_lesion_confidence(sub, les, probs, spacing, (calibration or {}).get(les.name)))
    return rows


def _lesion_confidence(sub: np.ndarray, les, probs: np.ndarray, spacing, cal) -> dict:
    """Mean probability, core fraction, calibrated interval and flag of one lesion (its box + 2 voxels)."""
    from scipy import ndimage

    from sdpm_cli.postprocess.uncertainty import band_voxels, low_confidence

    (x0, y0, z0), (x1, y1, z1) = les.bbox_index
    p = np.asarray(probs[les.label - 1][z0 : z1 + 1, y0 : y1 + 1, x0 : x1 + 1], dtype=np.float32)
    inside = p[sub]
    mean_prob = float(inside.mean()) if inside.size else 0.0
    row: dict = {"mean_prob": round(min(max(mean_prob, 0.0), 1.0), 4),
                 "core_fraction": round(float((inside >= 0.8).mean()) if inside.size else 0.0, 4)}
    ci = None
    if cal is not None:
        # the uncertain band in and around the lesion (2 voxels in-plane), on the native grid
        Y, X = probs.shape[2:]
        ya, yb, xa, xb = max(y0 - 2, 0), min(y1 + 3, Y), max(x0 - 2, 0), min(x1 + 3, X)
        zone = np.zeros((z1 - z0 + 1, yb - ya, xb - xa), bool)
        zone[:, y0 - ya : y0 - ya + sub.shape[1], x0 - xa : x0 - xa + sub.shape[2]] = sub
        zone = ndimage.binary_dilation(zone, structure=np.ones((1, 5, 5), bool))
        near = np.asarray(probs[les.label - 1][z0 : z1 + 1, ya:yb, xa:xb])
        band_ml = float(np.count_nonzero(band_voxels(near) & zone)) * float(np.prod(spacing)) / 1000.0
        ci = cal.interval(float(les.volume_ml), band_ml)
        row["ci95_ml"] = [float(ci[0]), float(ci[1])]
    row["low_confidence"] = bool(low_confidence(float(les.volume_ml), ci, mean_prob))
    return row


def software_versions() -> dict[str, str]:
    """Versions of sdpm, Python and the libraries that shape the result (as `sdpm info` lists them)."""
    from sdpm_cli.environment import versions

    return dict(versions())


def _as_dict(obj: Any) -> dict:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    return dict(obj)


def _volume_entry(label: int, v: Any, n_lesions: int, covers: str = "") -> dict:
    """Accepts a float (mL), a mapping, or the pipeline's ClassVolume."""
    if isinstance(v, (int, float)):
        d: dict = {"volume_ml": float(v)}
    else:
        d = _as_dict(v)
    ci = d.get("ci95_ml")
    entry = {
        "label": label,
        "volume_ml": float(d["volume_ml"]),
        "ci95_ml": [float(ci[0]), float(ci[1])] if ci is not None else None,
        "n_samples": int(d["n_samples"]) if d.get("n_samples") is not None else None,
        "n_lesions": n_lesions,
    }
    if "band_ml" in d:  # the pipeline's ClassVolume: say what the interval is
        rng = d.get("sample_range_ml")
        entry.update({
            "interval_level": d.get("level"),
            "interval_covers": (f"true lesion volume, calibrated on {covers}" if ci is not None and covers
                                else "no calibrated interval for this model and mode"),
            "band_ml": round(float(d["band_ml"]), 4),
            "sample_range_ml": [float(rng[0]), float(rng[1])] if rng is not None else None,
            "low_confidence": bool(d.get("low_confidence", False)),
        })
    return entry


def _strip_phi(d: Mapping) -> dict:
    return {k: (_strip_phi(v) if isinstance(v, Mapping) else v) for k, v in d.items() if str(k).lower() not in PHI_KEYS}


def build_report(
    *,
    volumes: Mapping[str, Any],
    lesions: Sequence[Mapping],
    series: Mapping | Any,
    warnings: Sequence[str],
    model: Mapping[str, Any],
    run: Mapping[str, Any],
    software: Optional[Mapping[str, str]] = None,
    include_phi: bool = False,
    phi: Optional[Mapping[str, Any]] = None,
    created_utc: Optional[str] = None,
    interval_source: str = "",
    validated_domain: Optional[Mapping[str, Any]] = None,
    dark_infarcts: Sequence[Mapping] = (),
) -> dict:
    """Assemble the report from explicit inputs (validated before it is returned).

    volumes: per class name, a float (mL), a mapping with volume_ml / ci95_ml / n_samples, or the
    pipeline's ClassVolume. lesions: rows as `lesion_rows` makes them. series: SeriesInfo or a dict
    (identifier keys are dropped). model: name, version, sha256 (intended_use, caveat where the model
    says them). run: mode, preset, seed, device,
    runtime_s. phi is included only when include_phi is True. interval_source: what the volume
    intervals were calibrated on (said in each volume's `interval_covers`).
    """
    lesions = [dict(r) for r in lesions]
    counts = {name: sum(1 for r in lesions if r["class"] == name) for name in CLASSES.values()}
    report = {
        "schema": SCHEMA_ID,
        "sdpm_version": __version__,
        "created_utc": created_utc or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "volumes": {name: _volume_entry(label, volumes[name], counts[name], interval_source)
                    for label, name in CLASSES.items()},
        "lesions": lesions,
        "series": _strip_phi(_as_dict(series)),
        "warnings": [str(w) for w in warnings],
        "model": {
            "name": str(model.get("name", "")),
            "version": str(model.get("version", "")),
            "sha256": str(model.get("sha256", "") or ""),
            **{k: str(model[k]) for k in ("intended_use", "caveat") if model.get(k)},
        },
        "run": {
            "mode": run["mode"],
            "preset": str(run["preset"]),
            "seed": int(run["seed"]),
            "device": str(run["device"]),
            "runtime_s": None if run.get("runtime_s") is None else round(float(run["runtime_s"]), 3),
            **{k: run[k] for k in ("network_runtime", "n_calls_per_slice", "timings", "inference", "lesion_filter", "orientation",
                                 "gating")
               if k in run},
        },
        "software": {str(k): str(v) for k, v in (software if software is not None else software_versions()).items()},
    }
    if validated_domain:
        report["validated_domain"] = {**{k: False for k in DOMAIN_FLAGS}, **dict(validated_domain)}
    if dark_infarcts:
        report["dark_infarcts"] = [dict(d) for d in dark_infarcts]
    if include_phi and phi:
        report["phi"] = dict(phi)
    validate_report(report)
    return report


CSV_COLUMNS = ("id", "class", "label", "volume_ml", "abc2_ml", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
               "slice_first", "slice_last", "n_voxels", "location", "ci95_lo_ml", "ci95_hi_ml", "mean_prob",
               "low_confidence")  # fmt: skip


def report_to_csv(report: Mapping) -> str:
    """One row per lesion (header only when there is none); centroid in patient LPS mm; location empty
    when the report has none."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in report["lesions"]:
        x, y, z = r["centroid_mm"]
        abc2 = "" if r["abc2_ml"] is None else f"{r['abc2_ml']:.4f}"
        ci = r.get("ci95_ml")
        w.writerow([r["id"], r["class"], r["label"], f"{r['volume_ml']:.4f}", abc2, x, y, z,
                    r["slice_first"], r["slice_last"], r["n_voxels"], r.get("location", ""),
                    "" if ci is None else f"{ci[0]:.4f}", "" if ci is None else f"{ci[1]:.4f}",
                    "" if r.get("mean_prob") is None else f"{r['mean_prob']:.4f}",
                    "" if "low_confidence" not in r else int(bool(r["low_confidence"]))])  # fmt: skip
    return buf.getvalue()


def write_report(report: Mapping, dest, *, force: bool = False) -> Path:
    """Validate, then write the JSON report atomically."""
    validate_report(report)
    return write_json(dest, report, force)


def write_report_csv(report: Mapping, dest, *, force: bool = False) -> Path:
    return write_text(dest, report_to_csv(report), force)


def segmentation_lesion_rows(seg: Any) -> list[dict]:
    """`lesion_rows` of a `pipeline.Segmentation`: locations from its CT, confidence from its
    probabilities, per-lesion intervals from its model's calibration for the mode it ran."""
    calib = getattr(getattr(seg, "model", None), "volume_calibration", None)
    per_class = None
    if calib is not None:
        per_class = {name: calib.get(seg.mode, name) for name in CLASSES.values()}
        per_class = {k: v for k, v in per_class.items() if v is not None} or None
    probs = getattr(seg, "probs", None)
    return lesion_rows(seg.labels, getattr(seg.study, "image", None), getattr(seg, "brain", None), probs=probs,
                       calibration=per_class)


def model_block(model: Any) -> dict:
    """A report's `model`: name, version and sha256 of a `pipeline.LoadedModel`, and its intended use
    and caveat (LoadedModel.validation) where it has them (segment and compare reports alike)."""
    header = dict(getattr(model, "header", {}) or {})
    v = getattr(model, "validation", None)
    return {
        "name": getattr(model, "name", header.get("name", "")),
        "version": header.get("version") or header.get("sdpm_version") or "",
        "sha256": getattr(model, "sha256", header.get("sha256", "")),
        **{k: val for k, val in (("intended_use", v and v.intended_use), ("caveat", v and v.caveat)) if val},
    }


def report_from_segmentation(
    seg: Any,
    *,
    include_phi: bool = False,
    phi: Optional[Mapping[str, Any]] = None,
    lesions: Optional[Sequence[Mapping]] = None,
) -> dict:
    """The report of a `pipeline.Segmentation` (what `sdpm segment --report` writes).

    lesions: rows already made by `lesion_rows` (default: made here, with the location of each
    lesion when the segmentation's study carries its CT image)."""
    model = model_block(seg.model)
    run = {
        "mode": seg.mode,
        "preset": seg.preset,
        "seed": seg.seed,
        "device": seg.device,
        "network_runtime": getattr(seg, "network_runtime", "torch"),
        "runtime_s": (seg.timings or {}).get("total_s"),
        "n_calls_per_slice": int(getattr(seg, "n_calls_per_slice", 0) or 0),
        "lesion_filter": dict(getattr(seg, "lesion_filter", {}) or {}),
        "timings": {k: round(float(v), 3) for k, v in (seg.timings or {}).items()},
        **({"orientation": dict(seg.orientation)} if getattr(seg, "orientation", None) else {}),
        **({"gating": {**seg.gating, "stochastic_slices": int(seg.stochastic_slices),
                       "brain_slices": int(seg.brain_slices)}} if getattr(seg, "gating", None) else {}),
    }
    return build_report(
        volumes=seg.volumes,
        lesions=segmentation_lesion_rows(seg) if lesions is None else lesions,
        interval_source=getattr(seg, "interval_source", ""),
        series=seg.study.series,
        warnings=seg.warnings,
        model=model,
        run=run,
        include_phi=include_phi,
        phi=phi,
        validated_domain=getattr(seg.study, "domain", None) or None,
        dark_infarcts=getattr(seg, "dark_infarcts", ()) or (),
    )
