"""The comparison document (JSON, schema `sdpm-compare/1`), its CSV and its console lines.

Built like the segmentation report (outputs.report): explicit inputs, validated against a JSON
Schema by the same small validator before it is written, no patient identifiers (the subject keys
are compared, never written).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Optional

from sdpm_cli import __version__
from sdpm_cli.labels import CLASSES

SCHEMA_ID = "sdpm-compare/1"
INTERVAL_COVERS = ("true change, if both volume intervals hold: their conservative difference "
                   "[f_lo - b_hi, f_hi - b_lo], at least 90% for two 95% intervals whatever their dependence")

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_IV = {"type": ["array", "null"], "items": _NUM, "minItems": 2, "maxItems": 2}
_CALL = {"type": "object", "required": ["definition", "point", "call", "interval"], "additionalProperties": False,
         "properties": {"definition": {"type": "string"}, "point": {"type": "boolean"},
                        "call": {"enum": ["yes", "no", "uncertain"]}, "interval": _IV}}
_CHANGE_PROPS = {
    "baseline_ml": {"type": "number", "minimum": 0}, "followup_ml": {"type": "number", "minimum": 0},
    "baseline_ci95_ml": _IV, "followup_ci95_ml": _IV, "change_ml": _NUM, "change_pct": _NUM_OR_NULL,
    "change_interval_ml": _IV, "expansion": {"type": "boolean"}, "expansion_call": {"enum": ["yes", "no", "uncertain"]},
    "flags": {"type": "object", "additionalProperties": _CALL},
}
_CHANGE_REQ = ["baseline_ml", "followup_ml", "change_ml", "change_pct", "change_interval_ml", "expansion",
               "expansion_call", "flags"]

COMPARE_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "sdpm comparison of a baseline and a follow-up scan",
    "type": "object",
    "required": ["schema", "sdpm_version", "created_utc", "classes", "lesions", "registration", "same_patient",
                 "baseline", "followup", "interval_covers", "warnings", "model", "run"],
    "additionalProperties": False,
    "properties": {
        "schema": {"enum": [SCHEMA_ID]},
        "sdpm_version": {"type": "string"},
        "created_utc": {"type": "string"},
        "classes": {"type": "object", "required": list(CLASSES.values()), "additionalProperties": False,
                    "properties": {n: {"type": "object", "required": _CHANGE_REQ, "additionalProperties": False,
                                       "properties": {**_CHANGE_PROPS, "ivh_baseline_ml": _NUM, "ivh_followup_ml": _NUM}}
                                   for n in CLASSES.values()}},
        "lesions": {"type": "array", "items": {
            "type": "object", "required": ["class", "status", "baseline_ids", "followup_ids", *_CHANGE_REQ],
            "additionalProperties": False,
            "properties": {**_CHANGE_PROPS, "class": {"enum": list(CLASSES.values())},
                           "status": {"enum": ["matched", "new", "resolved"]},
                           "baseline_ids": {"type": "array", "items": {"type": "integer"}},
                           "followup_ids": {"type": "array", "items": {"type": "integer"}},
                           "overlap_voxels": {"type": "integer", "minimum": 0}}}},
        "registration": {"type": "object", "required": ["brain_dice", "mutual_information", "passed"]},
        "same_patient": {"type": "object", "required": ["checked", "same", "note"]},
        "baseline": {"type": "object"},
        "followup": {"type": "object"},
        "interval_covers": {"type": "string"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "model": {"type": "object"},
        "run": {"type": "object"},
        "software": {"type": "object"},
    },
}


def _r(v: Optional[float], nd: int = 4) -> Optional[float]:
    return None if v is None else round(float(v), nd)


def _iv(iv) -> Optional[list[float]]:
    return None if iv is None else [round(float(iv[0]), 4), round(float(iv[1]), 4)]


def change_entry(vc, calls: dict) -> dict:
    exp = calls["expansion"]
    return {
        "baseline_ml": _r(vc.baseline_ml), "followup_ml": _r(vc.followup_ml),
        "baseline_ci95_ml": _iv(vc.baseline_ci), "followup_ci95_ml": _iv(vc.followup_ci),
        "change_ml": _r(vc.change_ml), "change_pct": _r(vc.change_pct, 2), "change_interval_ml": _iv(vc.change_ci),
        "expansion": bool(exp.point), "expansion_call": exp.call,
        "flags": {k: c.to_dict() for k, c in calls.items()},
    }


def _scan_entry(scan) -> dict:
    from sdpm_cli.outputs.report import _strip_phi

    return {"series": _strip_phi(scan.series), "n_lesions": {n: sum(r["class"] == n for r in scan.lesions)
                                                             for n in CLASSES.values()},
            "warnings": list(dict.fromkeys(scan.warnings))}


def build_compare_report(cmp, *, model: Optional[dict] = None, run: Optional[dict] = None,
                         software: Optional[dict] = None, created_utc: Optional[str] = None) -> dict:
    """The comparison as a JSON-ready dict (validated)."""
    from sdpm_cli.outputs.report import schema_errors, software_versions

    classes = {}
    for name, cc in cmp.classes.items():
        classes[name] = change_entry(cc.change, cc.calls)
        if name == "hemorrhage":
            classes[name].update(ivh_baseline_ml=_r(cmp.baseline.ivh_ml()), ivh_followup_ml=_r(cmp.followup.ivh_ml()))
    lesions = [{"class": lc.name, "status": lc.group.status, "baseline_ids": list(lc.group.baseline_ids),
                "followup_ids": list(lc.group.followup_ids), "overlap_voxels": lc.group.overlap_voxels,
                **change_entry(lc.change, lc.calls)} for lc in cmp.lesions]
    doc = {
        "schema": SCHEMA_ID,
        "sdpm_version": __version__,
        "created_utc": created_utc or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "classes": classes,
        "lesions": lesions,
        "registration": cmp.registration.to_dict(),
        "same_patient": dict(cmp.same_patient),
        "baseline": _scan_entry(cmp.baseline),
        "followup": _scan_entry(cmp.followup),
        "interval_covers": INTERVAL_COVERS,
        "warnings": [str(w) for w in cmp.warnings],
        "model": dict(model or {}),
        "run": {**dict(run or {}), "timings": {k: round(v, 3) for k, v in cmp.timings.items()}},
        "software": {str(k): str(v) for k, v in (software if software is not None else software_versions()).items()},
    }
    errors = schema_errors(doc, COMPARE_SCHEMA)
    if errors:
        raise ValueError("comparison report does not follow its schema: " + "; ".join(errors[:5]))
    return doc


def report_from_comparison(cmp) -> dict:
    """The document for a `compare_studies` result (model and run read from its segmentations)."""
    seg = cmp.baseline.segmentation
    model, run = {}, {}
    if seg is not None:
        from sdpm_cli.outputs.report import model_block

        model = model_block(seg.model)
        run = {"mode": seg.mode, "preset": seg.preset, "seed": seg.seed, "device": seg.device,
               "interval_source": seg.interval_source}
    return build_compare_report(cmp, model=model, run=run)


CSV_COLUMNS = ("scope", "class", "status", "baseline_ids", "followup_ids", "baseline_ml", "followup_ml", "change_ml",
               "change_pct", "change_lo_ml", "change_hi_ml", "expansion", "expansion_call", "flags")


def compare_to_csv(doc: dict) -> str:
    """One row per class, then one per lesion group; flags as `name=call` joined by ';'."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    rows = [("class", n, "", {"baseline_ids": [], "followup_ids": [], **e}) for n, e in doc["classes"].items()]
    rows += [("lesion", e["class"], e["status"], e) for e in doc["lesions"]]
    for scope, name, status, e in rows:
        iv = e["change_interval_ml"]
        w.writerow([scope, name, status, " ".join(map(str, e["baseline_ids"])), " ".join(map(str, e["followup_ids"])),
                    f"{e['baseline_ml']:.4f}", f"{e['followup_ml']:.4f}", f"{e['change_ml']:.4f}",
                    "" if e["change_pct"] is None else f"{e['change_pct']:.2f}",
                    "" if iv is None else f"{iv[0]:.4f}", "" if iv is None else f"{iv[1]:.4f}",
                    int(e["expansion"]), e["expansion_call"],
                    ";".join(f"{k}={v['call']}" for k, v in e["flags"].items())])
    return buf.getvalue()


def _pct_text(p: Optional[float]) -> str:
    return "n/a" if p is None else f"{p:+.0f}%"


def class_line(name: str, e: dict) -> str:
    """'hemorrhage: 23.0 -> 39.0 mL, change +16.0 mL (+69%; interval +14.5 to +17.4); expansion (...): yes; ...'"""
    iv = e["change_interval_ml"]
    iv_text = f"; interval {iv[0]:+.1f} to {iv[1]:+.1f}" if iv is not None else "; no interval"
    flags = []
    for key, c in e["flags"].items():
        label = {"expansion": "expansion" if name == "hemorrhage" else "growth"}.get(key, key.replace("_", " "))
        if key.startswith("growth_"):
            label = c["definition"]
        elif key == "new_intraventricular":
            label = "new intraventricular blood"
        else:
            label = f"{label} ({c['definition']})"
        flags.append(f"{label}: {c['call']}")
    return (f"{name}: {e['baseline_ml']:.1f} -> {e['followup_ml']:.1f} mL, change {e['change_ml']:+.1f} mL "
            f"({_pct_text(e['change_pct'])}{iv_text}); " + "; ".join(flags))


def console_lines(doc: dict) -> list[str]:
    reg = doc["registration"]
    lines = [f"registration: rigid, rotation {reg['angle_deg']:.1f} deg, shift {reg['shift_mm']:.1f} mm; brain Dice "
             f"{reg['brain_dice']:.3f} (>= {reg['min_brain_dice']:g} required), mutual information {reg['mutual_information']:.3f}"]
    lines += [class_line(n, e) for n, e in doc["classes"].items()]
    n = {s: sum(1 for e in doc["lesions"] if e["status"] == s) for s in ("matched", "new", "resolved")}
    lines.append(f"lesions: {n['matched']} matched, {n['new']} new, {n['resolved']} resolved")
    for e in doc["lesions"]:
        ids = f"baseline {','.join(map(str, e['baseline_ids'])) or '-'} / follow-up {','.join(map(str, e['followup_ids'])) or '-'}"
        lines.append(f"  {e['class']} {e['status']} ({ids}): {e['baseline_ml']:.1f} -> {e['followup_ml']:.1f} mL, "
                     f"change {e['change_ml']:+.1f} mL; {'expansion' if e['class'] == 'hemorrhage' else 'growth'}: "
                     f"{e['expansion_call']}")
    return lines
