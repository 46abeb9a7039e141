"""Where each lesion lies: intra-axial, intraventricular, extra-axial or subarachnoid.

A pure, explainable classifier over one lesion (a 26-connected component of one label) on the native
grid, in physical millimetres (anisotropic voxels are handled: every distance is measured in mm and
corrected for the half voxel between a voxel centre and the boundary it faces). No learning: a few
named measurements and an ordered list of rules, all thresholds in `LocationThresholds`.

Study-wide context (`LocationContext`, built once per image):
- cavity   = the intracranial mask (`preprocess.brainmask.brain_mask` unless given) plus every lesion;
- table    = bone (HU > bone_hu) outside the cavity; its surface voxels are the inner table. Bone
             inside the cavity (calcified choroid plexus, pineal, falx) is never "table". Where no
             bone is found (a skull-stripped image) the cavity boundary stands in for it;
- brain_hu = median HU of the cavity outside the lesions; CSF density is csf_min_hu .. csf_hu_max, with
             csf_hu_max = min(csf_max_hu, brain_hu - csf_below_brain_hu) so darker-than-usual scans work;
- max_depth_mm = the deepest point of the cavity below the table (its "centre");
- the mid-sagittal plane, fitted to the midpoints of the cavity's left-right chords.

Per lesion (the evidence, reported with the class):
- table_min_mm / depth_mm / table_reach_mm: the closest, median and 95th-percentile distance of the
  lesion's voxels to the inner table; relative_depth = depth_mm / max_depth_mm (0 table, 1 centre);
- table_contact: the share of the lesion's axial outline within near_table_mm of the inner table;
- thickness_mm: twice the 95th percentile of the distance from lesion voxels to the lesion's own
  boundary (~ the maximum thickness of a sheet, 0.63 x the diameter of a ball); mean_thickness_mm: four
  times the mean of that distance (= the thickness of a sheet, the typical calibre of branching blood);
- extent_mm: sqrt(e1 * e2) of the two largest principal extents (sqrt(12 x variance), voxel size
  included); flatness = extent_mm / thickness_mm (ball ~1.2, crescent or lens >= 3);
- csf_border: the share of a ring ring_inner_mm .. ring_outer_mm around the lesion (inside the cavity,
  outside every lesion; in-plane smoothed by smooth_mm) that has CSF density;
- density_hu: the lesion's median HU minus brain_hu (acute blood is denser than brain);
- midline_mm and sagittal_alignment: distance of the centroid from the mid-sagittal plane and
  |cos| between the lesion's thinnest axis and the plane normal.

Rules, first match wins:
1. intraventricular: dense (density_hu), deep (relative_depth, table_min_mm) and bordering CSF (csf_border);
2. extra-axial: dense, on the inner table (table_min_mm, table_contact), thin for its extent (flatness)
   and no deeper than its own thickness (table_reach_mm) - a subdural crescent or an epidural lens;
3. intraventricular: deep, away from the table, dense and of ventricular calibre
   (mean_thickness_mm) - blood layering in or casting a ventricle where no CSF is left beside it;
4. extra-axial: a thin dense sagittal sheet on the midline (falx: subdural blood along the falx);
5. subarachnoid: thin or branching (mean_thickness_mm, flatness), dense, and either bordering CSF or
   near the surface;
6. otherwise intra-axial. Every other class is a place where blood collects, so a lesion no denser
   than the brain (an infarct) ends here by its measured density, not by its label.
The thresholds were set on synthetic heads (`benchmarks/accuracy/location.py`, seeds 0-79, tuned
there and reported on seeds 1000-1079); they are a transparent baseline, not a validated reader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from sdpm_cli.errors import InputRejected
from sdpm_cli.labels import LOCATION_CLASSES  # noqa: F401 - re-exported
from sdpm_cli.postprocess.components import Component, label_components

_EXACT_WITHIN_MM = 15.0  # table distances nearer than this are exact (KD-tree), farther ones from a coarse field
_MAX_QUERY = 200_000  # lesion voxels measured against the table per lesion (an even subsample beyond)


@dataclass(frozen=True)
class LocationThresholds:
    """Every number the location rules use (HU, mm, fractions). The rule thresholds were chosen on
    synthetic heads, seeds 0-79 (benchmarks/accuracy/location.py --tune, rounded to its grid)."""

    bone_hu: float = 300.0  # the inner table: bone above this, outside the cavity
    csf_min_hu: float = -15.0  # CSF density: csf_min_hu .. min(csf_max_hu, brain_hu - csf_below_brain_hu)
    csf_max_hu: float = 20.0
    csf_below_brain_hu: float = 10.0
    smooth_mm: float = 0.6  # in-plane Gaussian sigma before judging CSF density (noise)
    ring_inner_mm: float = 0.8  # the ring around a lesion whose CSF share is csf_border
    ring_outer_mm: float = 2.5
    near_table_mm: float = 2.5  # "on the inner table"
    # 1. intraventricular
    ivh_relative_depth_min: float = 0.55
    ivh_table_min_mm: float = 10.0
    ivh_csf_border_min: float = 0.5
    # ... or deep, away from the table and of ventricular calibre (a layer or cast where CSF is not seen)
    ivh_narrow_relative_depth_min: float = 0.4
    ivh_narrow_table_min_mm: float = 8.0
    ivh_narrow_mean_thickness_min_mm: float = 0.0
    ivh_narrow_mean_thickness_max_mm: float = 8.0
    ivh_narrow_flatness_min: float = 0.0  # > 1.2 keeps balls out (the phantoms did not need it)
    dense_min_hu: float = 3.0  # blood: median HU at least this much above the brain's (every non-intra-axial rule)
    # 2. extra-axial over the convexity / skull base
    ea_table_min_mm: float = 1.0
    ea_contact_min: float = 0.3
    ea_flatness_min: float = 2.0
    ea_reach_factor: float = 1.25  # table_reach_mm <= factor x thickness_mm + near_table_mm
    # 3. extra-axial along the falx
    falx_midline_mm: float = 4.0
    falx_alignment_min: float = 0.9
    falx_thickness_max_mm: float = 10.0
    falx_flatness_min: float = 4.0
    # 4. subarachnoid
    sah_mean_thickness_max_mm: float = 5.0
    sah_csf_border_min: float = 0.2
    sah_table_min_mm: float = 15.0
    sah_flatness_min: float = 2.5  # sheets and branches, not balls

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_THRESHOLDS = LocationThresholds()


@dataclass
class LocationResult:
    label: int
    id: int  # 1-based per label, largest first (as postprocess.lesions.measure_lesions numbers them)
    n_voxels: int
    bbox_index: tuple[tuple[int, int, int], tuple[int, int, int]]  # inclusive (x, y, z) min, max
    location: str
    reason: str
    evidence: dict[str, Optional[float]] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.label, self.bbox_index, self.n_voxels)

    def to_dict(self) -> dict:
        return {"location": self.location, "location_reason": self.reason, "location_evidence": dict(self.evidence)}


def _corrected(delta_mm: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance from a voxel centre to the boundary of the voxel it points at (delta: [N, 3] mm).

    The straight segment between the centres leaves the target voxel's box after a share
    t = min_i (s_i / 2) / |delta_i| of its length; what remains is the distance to that voxel's face.
    """
    d = np.sqrt((delta_mm**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(np.abs(delta_mm) > 1e-9, (spacing / 2.0) / np.abs(delta_mm), np.inf).min(axis=1)
    return d * (1.0 - np.clip(t, 0.0, 1.0))


def _pad_box(box: tuple[slice, ...], pad: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(box, pad, shape))


def _r(v: Optional[float], nd: int = 3) -> Optional[float]:
    if v is None or not np.isfinite(v):
        return None
    return round(float(v), nd)


class LocationContext:
    """The study-wide fields every lesion of one image is judged against (see the module docstring)."""

    def __init__(
        self,
        image_hu: sitk.Image,
        brain: Optional[sitk.Image] = None,
        lesions: Optional[np.ndarray] = None,
        thresholds: LocationThresholds = DEFAULT_THRESHOLDS,
    ):
        from sdpm_cli.evaluate.cases import grid_mismatch

        if image_hu.GetDimension() != 3 or image_hu.GetNumberOfComponentsPerPixel() != 1:
            raise InputRejected("lesion location needs a 3-D single-component CT image")
        self.t = thresholds
        self._image = image_hu  # keeps the buffer behind the array view alive
        self.hu = sitk.GetArrayViewFromImage(image_hu)
        self.shape = self.hu.shape
        self.spacing = np.array(image_hu.GetSpacing()[::-1], float)  # (z, y, x) mm
        self.direction = np.reshape(image_hu.GetDirection(), (3, 3))
        if brain is None:
            from sdpm_cli.preprocess.brainmask import brain_mask

            brain = brain_mask(image_hu)
        elif grid_mismatch(brain, image_hu):
            raise InputRejected(f"lesion location: the brain mask is not on the image grid ({grid_mismatch(brain, image_hu)})")
        b = sitk.GetArrayViewFromImage(brain) > 0
        self.lesions = np.zeros(self.shape, bool) if lesions is None else np.asarray(lesions, bool)
        if self.lesions.shape != self.shape:
            raise InputRejected("lesion location: the lesion mask is not on the image grid")
        self.cavity = b | self.lesions
        self.notes: list[str] = []
        self._build()

    # ---- study-wide fields ---------------------------------------------------------------------
    def _build(self) -> None:
        t = self.t
        nz = np.nonzero(self.cavity.any(axis=(1, 2)))[0]
        if nz.size == 0:
            self.tree = None
            self.table_found = False
            self.brain_hu = float("nan")
            self.csf_hu_max = t.csf_max_hu
            self.max_depth_mm = float("nan")
            self.plane = None
            self.notes.append("no intracranial region found; every lesion is called intra-axial")
            return
        box = ndimage.find_objects(self.cavity.astype(np.uint8))[0]
        pad = tuple(int(np.ceil(12.0 / s)) + 1 for s in self.spacing)
        box = _pad_box(box, pad, self.shape)
        off = np.array([s.start for s in box])
        bone = np.asarray(self.hu[box]) > t.bone_hu
        table = bone & ~self.cavity[box]
        surface = table & ~ndimage.binary_erosion(table, border_value=1)
        pts = np.argwhere(surface)
        self.table_found = bool(pts.size)
        if not self.table_found:
            cav = self.cavity[box]
            pts = np.argwhere(ndimage.binary_dilation(cav) & ~cav)
            self.notes.append("no bone around the intracranial region; its boundary stands in for the inner table")
        self.tree = cKDTree((pts + off) * self.spacing)
        # far from the table the exact (KD-tree) distance is slow and needs no half-voxel care: a
        # coarse distance field (~1.5 mm cells, bone max-pooled so thin bone is kept) answers there
        step = np.array([max(1, int(round(1.5 / s))) for s in self.spacing])
        src = table if self.table_found else ~self.cavity[box]
        pooled = ndimage.maximum_filter(src, size=tuple(step), origin=tuple(-(step // 2)))
        coarse = pooled[:: step[0], :: step[1], :: step[2]]
        self._coarse_step, self._coarse_off = step, off
        # a voxel's coarse distance is within this of its exact one (its cell and the table's cell
        # each start up to step - 1 voxels before them): farther than the exact range by more, the
        # KD-tree search would find nothing, so it is not run (the same numbers, 3x fewer searches)
        self._coarse_slack = float(np.linalg.norm((step - 1) * self.spacing)) + 1e-3
        self._coarse = ndimage.distance_transform_edt(~coarse, sampling=self.spacing * step).astype(np.float32) \
            if coarse.any() else np.full(coarse.shape, np.inf, np.float32)
        cav_c = self.cavity[box][:: step[0], :: step[1], :: step[2]]
        self.max_depth_mm = float(self._coarse[cav_c].max()) if cav_c.any() else float("nan")
        # brain density and the CSF band
        sub = (slice(None), slice(None, None, 2), slice(None, None, 2))
        inside = self.cavity[sub] & ~self.lesions[sub]
        vals = np.asarray(self.hu[sub])[inside]
        self.brain_hu = float(np.median(vals)) if vals.size else float("nan")
        self.csf_hu_max = float(min(t.csf_max_hu, self.brain_hu - t.csf_below_brain_hu)) if vals.size else t.csf_max_hu
        self.plane = self._midline_plane()

    def _midline_plane(self):
        """(point, unit normal) of the mid-sagittal plane in array-axis mm, or None.

        Chords of the cavity along the array axis closest to the patient's left-right direction; the
        midpoints of the long ones (>= 40 mm) are fitted by a plane, twice, dropping outliers (> 8 mm).
        """
        lr = int(np.argmax(np.abs(self.direction[0, :])))  # x-y-z index axis most along patient x
        ax = 2 - lr  # its array axis (z, y, x order)
        others = [a for a in range(3) if a != ax]
        stride = [1 if self.spacing[a] >= 2.0 else 4 for a in range(3)]
        sub = tuple(slice(None, None, stride[a]) if a != ax else slice(None) for a in range(3))
        cav = np.moveaxis(self.cavity[sub], ax, -1)
        has = cav.any(axis=-1)
        if not has.any():
            return None
        n = cav.shape[-1]
        first = np.argmax(cav, axis=-1)
        last = n - 1 - np.argmax(cav[..., ::-1], axis=-1)
        length = (last - first) * self.spacing[ax]
        ok = has & (length >= 40.0)
        if ok.sum() < 10:
            return None
        ij = np.argwhere(ok)
        mid = (first[ok] + last[ok]) / 2.0 * self.spacing[ax]
        uv = np.stack([ij[:, k] * stride[others[k]] * self.spacing[others[k]] for k in range(2)], axis=1)
        A = np.c_[np.ones(len(uv)), uv]
        keep = np.ones(len(uv), bool)
        coef = None
        for _ in range(3):
            if keep.sum() < 10:
                return None
            coef, *_ = np.linalg.lstsq(A[keep], mid[keep], rcond=None)
            keep = np.abs(A @ coef - mid) <= 8.0
        normal = np.zeros(3)
        normal[ax] = 1.0
        normal[others[0]], normal[others[1]] = -coef[1], -coef[2]
        normal /= np.linalg.norm(normal)
        point = np.zeros(3)
        point[ax] = coef[0]
        return point, normal

    def table_distance(self, idx_zyx: np.ndarray) -> np.ndarray:
        """Distance (mm) from voxel centres ([N, 3] z, y, x indices) to the inner table's surface."""
        if self.tree is None:
            return np.full(len(idx_zyx), np.inf)
        idx = np.asarray(idx_zyx, int).reshape(-1, 3)
        c = np.clip((idx - self._coarse_off) // self._coarse_step, 0, np.array(self._coarse.shape) - 1)
        out = self._coarse[c[:, 0], c[:, 1], c[:, 2]].astype(float)
        ask = np.flatnonzero(out <= _EXACT_WITHIN_MM + self._coarse_slack)
        q = idx[ask] * self.spacing
        d_near, j = self.tree.query(q, distance_upper_bound=_EXACT_WITHIN_MM)
        near = np.isfinite(d_near)
        out[ask[near]] = _corrected(self.tree.data[j[near]] - q[near], self.spacing)
        return out

    # ---- one lesion -------------------------------------------------------------------------------
    def measure(self, mask: np.ndarray, offset=(0, 0, 0)) -> dict[str, Optional[float]]:
        """The evidence for one lesion: `mask` is a bool crop of it, `offset` the crop's (z, y, x) start."""
        t = self.t
        mask = np.asarray(mask, bool)
        off = np.asarray(offset, int)
        sp = self.spacing
        vox = np.argwhere(mask)
        n = len(vox)
        if n == 0:
            raise ValueError("empty lesion mask")
        # inner distance: voxel -> the lesion's own boundary
        pad = np.pad(mask, 1)
        _, ind = ndimage.distance_transform_edt(pad, sampling=sp, return_indices=True)
        vp = vox + 1
        near_bg = ind[:, vp[:, 0], vp[:, 1], vp[:, 2]].T
        inner = _corrected((near_bg - vp) * sp, sp)
        del ind
        thickness = 2.0 * float(np.percentile(inner, 95))
        mean_thickness = 4.0 * float(inner.mean())
        # principal extents (voxel size included) and the thinnest axis
        q = (vox + off) * sp
        centroid = q.mean(axis=0)
        cov = np.cov(q.T) if n > 1 else np.zeros((3, 3))
        cov = cov + np.diag(sp**2 / 12.0)
        w, v = np.linalg.eigh(cov)
        ext = np.sqrt(12.0 * np.clip(w, 0, None))  # ascending
        extent = float(np.sqrt(ext[2] * ext[1]))
        flatness = extent / max(thickness, float(sp.min()))
        thin_axis = v[:, 0]
        # distances to the inner table
        sel = np.arange(n) if n <= _MAX_QUERY else np.linspace(0, n - 1, _MAX_QUERY).astype(int)
        d = np.full(n, np.nan)
        d[sel] = self.table_distance(vox[sel] + off)
        d_sel = d[sel]
        finite = np.isfinite(d_sel)
        table_min = float(d_sel.min()) if finite.any() else None
        depth = float(np.median(d_sel)) if finite.any() else None
        reach = float(np.percentile(d_sel, 95)) if finite.any() else None
        # axial outline: lesion voxels with an in-plane 4-neighbour outside the lesion
        er = ndimage.binary_erosion(mask, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool), border_value=0)
        outline = (mask & ~er)[vox[:, 0], vox[:, 1], vox[:, 2]]
        on = outline & np.isfinite(d)
        contact = float((d[on] <= t.near_table_mm).mean()) if on.any() else None
        # CSF share of the ring around the lesion
        csf_border = self._csf_border(mask, off)
        rel_depth = depth / self.max_depth_mm if depth is not None and self.max_depth_mm > 0 else None
        lesion_hu = np.asarray(self.hu[tuple(slice(o, o + n) for o, n in zip(off, mask.shape))])[mask]
        density = float(np.median(lesion_hu)) - self.brain_hu
        midline = align = None
        if self.plane is not None:
            p0, nrm = self.plane
            midline = float(abs(np.dot(centroid - p0, nrm)))
            align = float(abs(np.dot(thin_axis, nrm)))
        return {
            "table_min_mm": _r(table_min, 2),
            "depth_mm": _r(depth, 2),
            "table_reach_mm": _r(reach, 2),
            "relative_depth": _r(rel_depth),
            "table_contact": _r(contact),
            "thickness_mm": _r(thickness, 2),
            "mean_thickness_mm": _r(mean_thickness, 2),
            "extent_mm": _r(extent, 2),
            "flatness": _r(flatness, 2),
            "csf_border": _r(csf_border),
            "density_hu": _r(density, 1),
            "midline_mm": _r(midline, 2),
            "sagittal_alignment": _r(align),
        }

    def _csf_border(self, mask: np.ndarray, off: np.ndarray) -> Optional[float]:
        t, sp = self.t, self.spacing
        pad = np.array([int(np.ceil(t.ring_outer_mm / s)) + 1 for s in sp])
        lo = np.maximum(off - pad, 0)
        hi = np.minimum(off + np.array(mask.shape) + pad, self.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        m = np.zeros(hi - lo, bool)
        inner = tuple(slice(o - a, o - a + s) for o, a, s in zip(off, lo, mask.shape))
        m[inner] = mask
        dout = ndimage.distance_transform_edt(~m, sampling=sp)
        ring = (dout > t.ring_inner_mm) & (dout <= t.ring_outer_mm) & self.cavity[box] & ~self.lesions[box]
        if not ring.any():
            return None
        hu = np.asarray(self.hu[box], np.float32)
        sig = (0.0, t.smooth_mm / sp[1], t.smooth_mm / sp[2])
        hs = ndimage.gaussian_filter(hu, sigma=sig, mode="nearest") if t.smooth_mm > 0 else hu
        v = hs[ring]
        return float(((v >= t.csf_min_hu) & (v <= self.csf_hu_max)).mean())

    def decide(self, ev: dict[str, Optional[float]]) -> tuple[str, str]:
        if self.tree is None:
            return "intra-axial", "no intracranial region found (default)"
        return decide(ev, self.t)

    def classify(self, mask: np.ndarray, offset=(0, 0, 0)) -> tuple[str, str, dict]:
        ev = self.measure(mask, offset)
        loc, why = self.decide(ev)
        return loc, why, ev


def decide(ev: dict[str, Optional[float]], t: LocationThresholds = DEFAULT_THRESHOLDS) -> tuple[str, str]:
    """(location, reason) from the evidence, by the ordered rules of the module docstring (pure: the
    benchmark re-decides stored evidence under other thresholds)."""

    def g(k, default=0.0):
        v = ev.get(k)
        return default if v is None else v

    tmin, rel, csf = g("table_min_mm", np.inf), g("relative_depth"), g("csf_border")
    thick, mthick, flat, contact = g("thickness_mm"), g("mean_thickness_mm"), g("flatness"), g("table_contact")
    reach = g("table_reach_mm", np.inf)
    dense = g("density_hu", np.inf)  # unknown density never vetoes
    if rel >= t.ivh_relative_depth_min and tmin >= t.ivh_table_min_mm and csf >= t.ivh_csf_border_min \
            and dense >= t.dense_min_hu:
        return "intraventricular", (f"deep (relative depth {rel:.2f}, {tmin:.0f} mm from the inner table) "
                                    f"and {csf:.0%} of its border is CSF density")
    if (tmin <= t.ea_table_min_mm and contact >= t.ea_contact_min and flat >= t.ea_flatness_min
            and reach <= t.ea_reach_factor * thick + t.near_table_mm and dense >= t.dense_min_hu):
        return "extra-axial", (f"lies on the inner table ({contact:.0%} of its outline within {t.near_table_mm:g} mm), "
                               f"{thick:.1f} mm thick over {g('extent_mm'):.0f} mm (flatness {flat:.1f})")
    if (rel >= t.ivh_narrow_relative_depth_min and tmin >= t.ivh_narrow_table_min_mm
            and t.ivh_narrow_mean_thickness_min_mm <= mthick <= t.ivh_narrow_mean_thickness_max_mm
            and flat >= t.ivh_narrow_flatness_min and dense >= t.dense_min_hu):
        return "intraventricular", (f"deep (relative depth {rel:.2f}, {tmin:.0f} mm from the inner table) "
                                    f"and a dense collection of ventricular calibre ({mthick:.1f} mm mean thickness)")
    mid, align = ev.get("midline_mm"), ev.get("sagittal_alignment")
    if (mid is not None and align is not None and mid <= t.falx_midline_mm and align >= t.falx_alignment_min
            and thick <= t.falx_thickness_max_mm and flat >= t.falx_flatness_min and dense >= t.dense_min_hu):
        return "extra-axial", (f"a {thick:.1f} mm sagittal sheet {mid:.1f} mm from the midline "
                               f"(along the falx; flatness {flat:.1f})")
    if mthick <= t.sah_mean_thickness_max_mm and flat >= t.sah_flatness_min and dense >= t.dense_min_hu and (
            csf >= t.sah_csf_border_min or tmin <= t.sah_table_min_mm):
        where = f"{csf:.0%} of its border is CSF density" if csf >= t.sah_csf_border_min else \
            f"{tmin:.0f} mm from the inner table"
        return "subarachnoid", f"thin dense blood ({mthick:.1f} mm mean thickness, flatness {flat:.1f}) and {where}"
    return "intra-axial", "none of the extra-axial, intraventricular or subarachnoid patterns"


def classify_lesions(
    labels: sitk.Image,
    image_hu: sitk.Image,
    brain: Optional[sitk.Image] = None,
    *,
    thresholds: LocationThresholds = DEFAULT_THRESHOLDS,
    min_voxels: int = 1,
    components: Optional[list[Component]] = None,
) -> list[LocationResult]:
    """The location class of every lesion of `labels` (on the grid of `image_hu`), with its evidence.

    Results come in the order of `measure_lesions(labels).lesions` (by label, then largest first).
    The brain (intracranial) mask is computed with `brain_mask` when not given, and only when there
    is a lesion to classify. `components`: `postprocess.lesions.label_components` of the labels'
    array (with `min_voxels`), when the caller has them already.
    """
    from sdpm_cli.evaluate.cases import grid_mismatch
    from sdpm_cli.labels import as_label_array

    arr, _ = as_label_array(labels)
    why = grid_mismatch(labels, image_hu)
    if why:
        raise InputRejected(f"lesion location: the CT is not on the mask's grid ({why})")
    comps = label_components(arr, min_voxels) if components is None else components
    if not comps:
        return []
    ctx = LocationContext(image_hu, brain, arr > 0, thresholds)
    out = []
    for c in comps:
        loc, why, ev = ctx.classify(c.mask, tuple(s.start for s in c.crop))
        out.append(LocationResult(label=c.label, id=c.id, n_voxels=c.n_voxels, bbox_index=(c.lo, c.hi), location=loc,
                                  reason=why, evidence=ev))
    return out
