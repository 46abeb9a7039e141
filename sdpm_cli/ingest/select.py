"""Group image headers into series and choose one by explicit, explained rules.

Rules in order (the first one on which a series loses is the reason shown for leaving it out):
axial CT, not a localizer / reformat / secondary capture, enough slices and coverage; then
ORIGINAL/PRIMARY over derived; soft-tissue/brain kernel over unknown over bone; slice thickness
closest to what the model was trained on; complete and untilted over series needing correction;
most slices; lowest series number.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from sdpm_cli.errors import UsageError
from sdpm_cli.ingest import geometry
from sdpm_cli.ingest.discover import IGNORED_KINDS, Discovery, Header
from sdpm_cli.ingest.rules import IngestRules
from sdpm_cli.ingest.study import SeriesInfo, SeriesRow, Survey

# Vendor kernel names differ; these are the sharp (bone/lung) and smooth (soft tissue/brain) families.
_BONE_WORDS = ("BONE", "EDGE", "DETAIL", "LUNG", "SHARP", "HIGH", "ULTRA")
_SOFT_WORDS = ("STANDARD", "STD", "SOFT", "BRAIN", "HEAD", "SMOOTH", "NEURO")
_PHILIPS_SOFT = {"A", "B", "C", "UA", "UB", "UC", "EA", "EB", "EC", "CA", "CB"}
_PHILIPS_BONE = {"D", "E", "YA", "YB", "YC", "YD", "YE", "YF", "L", "LA", "LB"}
_SIEMENS = re.compile(r"^[A-Z][A-Z]?[A-Z]?(\d{2})[A-Z]?\d?$")  # B30f, H70h, Hr40, Qr40d, J30s, Br64d3
_CANON = re.compile(r"^FC(\d{2})$")
_REFORMAT_WORDS = ("REFORMATTED", "MPR", "MIP", "MINIP", "VOLUME", "PROJECTION IMAGE", "CURVED", "3D")


def kernel_class(kernel: str, description: str = "") -> str:
    """'soft', 'bone' or 'unknown' from the vendor's kernel name (and series description as a hint)."""
    k = kernel.upper().replace(" ", "")
    parts = [p for p in re.split(r"[\\/,]", k) if p]
    for p in parts:
        if any(w in p for w in _BONE_WORDS):
            return "bone"
        if any(w in p for w in _SOFT_WORDS):
            return "soft"
        if p in _PHILIPS_SOFT:
            return "soft"
        if p in _PHILIPS_BONE:
            return "bone"
        m = _CANON.match(p)  # before Siemens: "FC30" would also match the Siemens pattern
        if m:
            return "bone" if int(m.group(1)) >= 30 else "soft"
        m = _SIEMENS.match(p)
        if m:
            return "bone" if int(m.group(1)) >= 50 else "soft"
    d = description.upper()
    if any(w in d for w in ("BONE", "LUNG")):
        return "bone"
    if any(w in d for w in ("BRAIN", "SOFT", "STD", "STANDARD")):
        return "soft"
    return "unknown"


def is_reformat(h: Header) -> bool:
    desc = h.description.upper()
    return any(w in h.image_type for w in _REFORMAT_WORDS) or any(w in desc for w in ("MPR", "MIP", "REFORMAT"))


@dataclass
class Candidate:
    """One series (one orientation and matrix size of one SeriesInstanceUID)."""

    uid: str
    kind: str
    headers: list[Header]
    outliers: list[Header] = field(default_factory=list)  # localizer-like images dropped with a warning
    mixed: list[list[Header]] = field(default_factory=list)  # other size/orientation groups (a fault)
    geom: Optional[geometry.StackGeometry] = None
    info: Optional[SeriesInfo] = None
    fault: str = ""  # hard reason it cannot be used at all
    needs: list[str] = field(default_factory=list)  # corrections needed: "tilt", "gaps", "mixed", "duplicates"

    @property
    def first(self) -> Header:
        return self.headers[0]


def _geom_key(h: Header):
    # every non-finite orientation groups together (NaN != NaN would split the series per slice)
    iop = tuple(round(v, 3) for v in h.iop) if h.iop and all(math.isfinite(v) for v in h.iop) else None
    return (iop, h.rows, h.cols)


def _split_series(uid: str, headers: list[Header], rules: IngestRules) -> Candidate:
    groups: dict = defaultdict(list)
    for h in headers:
        groups[_geom_key(h)].append(h)
    ordered = sorted(groups.values(), key=len, reverse=True)
    cand = Candidate(uid=uid, kind=ordered[0][0].kind, headers=ordered[0])
    for g in ordered[1:]:
        if len(g) <= rules.max_outlier_images:
            cand.outliers.extend(g)
        else:
            cand.mixed.append(g)
    return cand


def _few(hs: list[Header]) -> str:
    names = ", ".join(h.path.name for h in hs[:2])
    return f"{len(hs)} slice(s) ({names}{', ...' if len(hs) > 2 else ''})"


def header_fault(c: Candidate, rules: IngestRules) -> str:
    """Faults in the per-slice geometry and pixel tags that would silently misplace or misscale voxels."""
    if c.kind != "ct":
        return ""
    hs = c.headers
    def iop_fault(x: Header) -> str:
        return geometry.orientation_fault(x.iop, rules.max_orientation_skew_deg) if x.iop else ""

    # outliers too: a slice with broken cosines is a corrupt slice, not a localizer to drop
    bad = [h for h in hs + c.outliers + [x for g in c.mixed for x in g] if iop_fault(h)]
    if bad:
        return f"{iop_fault(bad[0])} in {_few(bad)}"
    bad = [h for h in hs if h.ipp and not all(math.isfinite(v) for v in h.ipp)]
    if bad:
        return f"ImagePositionPatient is not finite in {_few(bad)}"
    bad = [h for h in hs if h.pixel_spacing and not all(math.isfinite(v) and v > 0 for v in h.pixel_spacing)]
    if bad:
        ps = "\\".join(f"{v:g}" for v in bad[0].pixel_spacing)
        return f"PixelSpacing {ps} is not a positive size in {_few(bad)}"
    spacings = [h.pixel_spacing for h in hs if h.pixel_spacing]
    if spacings:
        ref = spacings[0]
        off = [h for h in hs if h.pixel_spacing and any(
            abs(a - b) > rules.pixel_spacing_tolerance_rel * b for a, b in zip(h.pixel_spacing, ref))]
        if off:
            def fmt(v) -> str:
                return "\\".join(f"{x:g}" for x in v) + " mm"

            return (f"PixelSpacing differs between slices of one series: {fmt(ref)} in {len(hs) - len(off)} slice(s), "
                    f"{fmt(off[0].pixel_spacing)} in {_few(off)}; the slices are not one grid")
    bad = [h for h in hs if h.slope is not None and (not math.isfinite(h.slope) or h.slope == 0)]
    if bad:
        return f"RescaleSlope {bad[0].slope:g} in {_few(bad)}: stored values cannot be converted to HU"
    bad = [h for h in hs if h.intercept is not None and not math.isfinite(h.intercept)]
    if bad:
        return f"RescaleIntercept {bad[0].intercept:g} in {_few(bad)}: stored values cannot be converted to HU"
    bad = [h for h in hs if h.samples_per_pixel != 1 or (h.photometric and not h.photometric.startswith("MONOCHROME"))]
    if bad:
        b = bad[0]
        return (f"PhotometricInterpretation {b.photometric or '?'} with {b.samples_per_pixel} sample(s) per pixel in "
                f"{_few(bad)}: a colour or palette image, not CT attenuation values")
    return ""


def _describe(c: Candidate, rules: IngestRules) -> None:
    """Fill geometry, SeriesInfo, hard fault and needed corrections of a candidate."""
    h = c.first
    c.fault = header_fault(c, rules)
    usable_iop = bool(h.iop) and not geometry.orientation_fault(h.iop, rules.max_orientation_skew_deg)
    orient = geometry.orientation_name(h.iop, rules.max_axial_angle_deg) if usable_iop else "unknown"
    ps = h.pixel_spacing or (0.0, 0.0)
    if not c.fault and h.iop and h.pixel_spacing and all(x.ipp for x in c.headers):
        c.geom = geometry.stack_geometry(
            [x.ipp for x in c.headers], h.iop, h.pixel_spacing,
            duplicate_mm=rules.duplicate_position_mm, tol_mm=rules.spacing_tolerance_mm,
            tol_rel=rules.spacing_tolerance_rel, max_shear_px=rules.max_shear_px,
        )
    g = c.geom
    n = len(g.unique) if g else len(c.headers)
    c.info = SeriesInfo(
        uid=c.uid, number=h.series_number, description=h.description, kernel=h.kernel,
        kernel_class=kernel_class(h.kernel, h.description), thickness_mm=h.thickness, n_slices=n,
        spacing=(ps[1], ps[0], g.spacing if g else 0.0), tilt_deg=g.tilt_deg if (g and g.tilted) else 0.0,
        orientation=orient, image_type=h.image_type, coverage_mm=g.coverage_mm if g else 0.0,
        rows=h.rows, cols=h.cols, manufacturer=h.manufacturer, transfer_syntax=h.transfer_syntax,
        patient_position=h.patient_position,
    )
    if c.fault:
        return
    if c.kind != "ct":
        c.fault = {
            "enhanced_ct": "Enhanced CT (multi-frame) is not supported: export the series as classic CT images",
            "localizer": "localizer / scout",
            "secondary_capture": "secondary capture, not a CT image",
            "other_modality": f"not CT (modality {h.modality or 'unknown'})",
        }.get(c.kind, IGNORED_KINDS.get(c.kind, c.kind))
        return
    if g is None:
        c.fault = "missing ImagePositionPatient / ImageOrientationPatient / PixelSpacing"
        return
    if orient != "axial":
        c.fault = f"{orient} plane, not axial"
    elif is_reformat(h):
        c.fault = "reformat (" + ("\\".join(h.image_type) or h.description) + ")"
    elif n < rules.min_slices:
        c.fault = f"only {n} slice{'s' if n != 1 else ''} (clinical minimum {rules.min_slices})"
    elif c.info.coverage_mm < rules.min_coverage_mm:
        c.fault = f"covers only {c.info.coverage_mm:.0f} mm head-feet (clinical minimum {rules.min_coverage_mm:.0f} mm)"
    if g.tilted:
        c.needs.append("tilt")
    if not g.even:
        c.needs.append("gaps")
    if c.mixed:
        c.needs.append("mixed sizes")
    if g.duplicates:
        c.needs.append("duplicates")


def _rank(c: Candidate, rules: IngestRules) -> tuple:
    info = c.info
    derived = 0 if ("ORIGINAL" in info.image_type and "PRIMARY" in info.image_type) else 1
    kern = {"soft": 0, "unknown": 1, "bone": 2}[info.kernel_class]
    thick = info.thickness_mm if info.thickness_mm else info.spacing[2]
    dist = round(abs(thick - rules.preferred_thickness_mm) / rules.thickness_step_mm)
    corr = 1 if [x for x in c.needs if x != "duplicates"] else 0
    return (derived, kern, dist, corr, -info.n_slices, info.number if info.number is not None else 1 << 30, c.uid)


def _why_not(c: Candidate, best: Candidate, rules: IngestRules) -> str:
    a, b = _rank(c, rules), _rank(best, rules)
    ci, bi = c.info, best.info
    if a[0] != b[0]:
        return "not ORIGINAL/PRIMARY (" + "\\".join(ci.image_type) + ")"
    if a[1] != b[1]:
        what = {"bone": "bone/sharp kernel", "unknown": "kernel not known as soft-tissue"}[ci.kernel_class]
        return f"{what} ({ci.kernel or 'none'}); chosen series has soft-tissue kernel {bi.kernel}" if bi.kernel_class == "soft" else f"{what} ({ci.kernel or 'none'})"
    if a[2] != b[2]:
        return (f"slice thickness {ci.thickness_mm or ci.spacing[2]:.2f} mm is further from the "
                f"{rules.preferred_thickness_mm:g} mm the model was trained on")
    if a[3] != b[3]:
        return "needs correction (" + ", ".join(c.needs) + "); a complete untilted series exists"
    if a[4] != b[4]:
        return f"fewer slices ({ci.n_slices} < {bi.n_slices})"
    return "equivalent series; the lower series number was chosen"


def _why_chosen(c: Candidate, rules: IngestRules, others: int) -> str:
    i = c.info
    thick = i.thickness_mm or i.spacing[2]
    parts = [
        "axial " + ("ORIGINAL/PRIMARY" if "ORIGINAL" in i.image_type else "derived") + " CT",
        {"soft": "soft-tissue kernel", "unknown": "unrecognised kernel", "bone": "bone kernel"}[i.kernel_class]
        + (f" {i.kernel}" if i.kernel else ""),
        f"{thick:g} mm (model trained on {rules.preferred_thickness_mm:g} mm)",
        "complete and untilted" if not c.needs else "needs " + ", ".join(c.needs),
        f"{i.n_slices} slices",
    ]
    return ", ".join(parts) + ("" if others else "; the only usable series")


def survey(discovery: Discovery, rules: IngestRules, series_uid: Optional[str] = None) -> tuple[Survey, list[Candidate]]:
    """Rank every series; the chosen one is flagged, each other carries its reason."""
    by_uid: dict[tuple[str, str], list[Header]] = defaultdict(list)
    for h in discovery.headers:
        by_uid[(h.series_uid, h.kind)].append(h)
    # A CT series carries its embedded localizers as outliers instead of a separate row.
    cands: list[Candidate] = []
    for (uid, kind), hs in by_uid.items():
        if kind == "localizer" and (uid, "ct") in by_uid:
            continue
        if kind == "ct":
            hs = hs + by_uid.get((uid, "localizer"), [])
        c = _split_series(uid, hs, rules) if kind == "ct" else Candidate(uid=uid, kind=kind, headers=hs)
        _describe(c, rules)
        cands.append(c)
    cands.sort(key=lambda c: (c.info.number if c.info.number is not None else 1 << 30, c.uid))
    ignored = {k: v for k, v in discovery.ignored.items()}
    for c in cands:
        if c.fault and c.kind != "ct":
            ignored[c.kind] = ignored.get(c.kind, 0) + len(c.headers)
    rows = {c.uid + c.kind: SeriesRow(info=c.info, kind=c.kind, reason=c.fault, needs=list(c.needs)) for c in cands}
    result = Survey(root=discovery.root, rows=list(rows.values()), ignored=ignored, n_files=discovery.n_files)

    ct = [c for c in cands if c.kind in ("ct", "enhanced_ct")]
    if series_uid is not None:
        match = [c for c in cands if c.uid == series_uid]
        if not match:
            raise UsageError(f"series {series_uid} is not in {discovery.root} (list them with `sdpm series`)")
        best = match[0]
        row = rows[best.uid + best.kind]
        if best.fault:
            result.refusal = f"{best.info.label} cannot be used: {best.fault}"
        else:
            row.chosen, row.reason = True, "chosen with --series"
        for c in cands:
            if c is not best and not c.fault:
                rows[c.uid + c.kind].reason = "not the series given with --series"
        return result, cands

    studies = {h.study_uid for c in ct for h in c.headers}
    subjects = {h.subject_key for c in ct for h in c.headers}
    usable = [c for c in cands if not c.fault]
    if len(subjects) > 1 or len(studies) > 1:
        what = f"{len(subjects)} patients" if len(subjects) > 1 else f"{len(studies)} studies"
        result.refusal = f"the folder holds {what}: choose one series with --series UID (list them with `sdpm series`)"
        for c in usable:
            rows[c.uid + c.kind].reason = "several studies/patients in the folder: give --series"
        return result, cands
    if not usable:
        result.refusal = _nothing_usable(discovery, cands, rules)
        return result, cands
    usable.sort(key=lambda c: _rank(c, rules))
    best = usable[0]
    rows[best.uid + best.kind].chosen = True
    rows[best.uid + best.kind].reason = _why_chosen(best, rules, len(usable) - 1)
    for c in usable[1:]:
        rows[c.uid + c.kind].reason = _why_not(c, best, rules)
    return result, cands


def _nothing_usable(discovery: Discovery, cands: list[Candidate], rules: IngestRules) -> str:
    """The one-line refusal when no series qualifies, naming the most relevant fault."""
    if discovery.n_files == 0:
        return f"no files found in {discovery.root}"
    if not discovery.headers:
        counts = ", ".join(f"{n} {IGNORED_KINDS.get(k, k)}" for k, n in sorted(discovery.ignored.items()))
        return f"no DICOM image found in {discovery.root} ({counts})"
    ct = [c for c in cands if c.kind == "ct"]
    enhanced = [c for c in cands if c.kind == "enhanced_ct"]
    if not ct and enhanced:
        return f"{enhanced[0].info.label}: {enhanced[0].fault}"
    if not ct:
        kinds = sorted({IGNORED_KINDS.get(c.kind, c.kind) for c in cands})
        modalities = sorted({c.first.modality for c in cands if c.first.modality})
        return "no CT image series found (only " + ", ".join(kinds) + (f"; modality {', '.join(modalities)}" if modalities else "") + ")"
    axial = [c for c in ct if c.info.orientation in ("axial", "unknown")]  # unknown: its fault says why
    if not axial:
        found = ", ".join(f"{c.info.orientation} ({c.info.label})" for c in ct)
        return f"no axial CT series: only {found}"
    best = max(axial, key=lambda c: c.info.n_slices)
    return f"no usable axial CT series: {best.info.label}: {best.fault}"
