"""Stroke lesions drawn into the canonical head: the exact truth fraction plus the HU change they cause.

Each lesion is a partial-volume fraction field on a crop of the canonical grid (1 = lesion). The
image change is driven by the same field, so image and truth agree. Lesions never overlap (their
fractions sum to at most 1 everywhere), which makes the per-lesion volumes add up to the class volume.

* infarct (label 1): territorial wedges (MCA, MCA branch, ACA, PCA) from a deep apex out to the cortex,
  hypodense by 3-12 HU with loss of grey-white contrast and sulcal effacement; lacunes 0.1-2 mL.
* hemorrhage (label 2) is any acute intracranial blood: lobar and deep (basal ganglia, thalamus)
  haematomas with an unlabelled hypodense oedema rim; intraventricular blood that layers in the
  dependent ventricles; subdural crescents over the convexity or along the falx; epidural lenses;
  subarachnoid blood filling sulci, fissures and basal cisterns; cortical contusions (often several).
  Blood is always brighter than the brain around it (DomainRanges.blood_above_brain_hu).
* mimics (never labelled, listed in meta["mimics"]): old infarcts (encephalomalacia, CSF-like),
  calcifications and dense sinuses (anatomy), beam hardening, metal and motion (scanner).

Every lesion records its location class (LOCATION_CLASSES), which the report's lesion table uses too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdpm_cli.labels import LOCATION_CLASSES  # noqa: F401 - re-exported
from sdpm_cli.synth.anatomy import Anatomy
from sdpm_cli.synth.config import DOMAINS, DomainRanges
from sdpm_cli.synth.fields import F32, coarse_noise, ellipsoid, rot_matrix, soft_in

INFARCT, HEMORRHAGE = 1, 2
HEMORRHAGE_KINDS = ("lobar", "deep", "intraventricular", "subdural", "epidural", "subarachnoid", "contusion")
INFARCT_KINDS = ("territorial", "lacune", "shapeless")
LOCATION_OF_KIND = {"territorial": "intra-axial", "lacune": "intra-axial", "shapeless": "intra-axial", "lobar": "intra-axial", "deep": "intra-axial",
                    "contusion": "intra-axial", "intraventricular": "intraventricular", "subdural": "extra-axial",
                    "epidural": "extra-axial", "subarachnoid": "subarachnoid"}


@dataclass
class Lesion:
    cls: int                # 1 infarct, 2 hemorrhage
    kind: str               # INFARCT_KINDS | HEMORRHAGE_KINDS
    location: str
    sl: tuple               # crop of the canonical grid
    frac: np.ndarray        # truth fraction in the crop
    params: dict = field(default_factory=dict)
    volume_ml: float = 0.0  # filled in on the acquired grid (label voxels x voxel volume)

    def canonical_ml(self, h: float) -> float:
        return float(self.frac.sum(dtype=np.float64) * h ** 3 / 1000.0)

    @property
    def location_class(self) -> str:
        return LOCATION_OF_KIND[self.kind]


def _loguniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _side_name(side: int) -> str:
    return "left" if side > 0 else "right"  # +x is the patient's left (LPS)


class _Painter:
    """Keeps the lesions disjoint and applies their HU changes to the anatomy in place."""

    def __init__(self, an: Anatomy, ranges: DomainRanges | None = None):
        self.an = an
        self.r = ranges or DOMAINS["clinical"]
        self.occ = np.zeros(an.grid.shape, F32)
        self.lesions: list[Lesion] = []
        self.mimics: list[dict] = []

    def blood_hu(self, rng) -> float:
        """Acute blood: in the domain's range and always clearly brighter than the brain."""
        H = self.an.params.hu
        lo, hi = self.r.blood_hu
        floor = max(H["wm"], H["gm"]) + self.r.blood_above_brain_hu
        return float(max(rng.uniform(lo, hi), floor + rng.uniform(0.0, 10.0)))

    def infarct_delta(self, rng) -> float:
        return float(rng.uniform(*self.r.infarct_delta_hu))

    def free(self, sl, frac) -> bool:
        return not bool(np.any((self.occ[sl] > 0.0) & (frac > 0.0)))

    def add(self, les: Lesion) -> Lesion | None:
        les.frac = np.minimum(les.frac, 1.0 - self.occ[les.sl]).astype(F32)
        if les.canonical_ml(self.an.grid.h) < 0.05:
            return None
        self.occ[les.sl] += les.frac
        self.lesions.append(les)
        return les


def _crop(an: Anatomy, c, half):
    g = an.grid
    c = np.asarray(c, float)
    sl = g.box(c - half, c + half)
    return sl, g.zyx(sl)


def _hemisphere(an: Anatomy, sl, side: int):
    z, y, x = an.grid.zyx(sl)
    return soft_in(-side * (x - an.x_mid(y)) + 1.0, an.grid.h)


def _wedge(an: Anatomy, rng, side: int, swell_max: float = 0.8):
    """A vascular-territory wedge (MCA, MCA branch, ACA, PCA) from a deep apex out to the cortex.

    Returns (territory, crop, fraction, support, tissue, swell, half-angle in degrees): the fraction is
    the wedge weight times its support (parenchyma of one hemisphere, plus effaced surface CSF).
    """
    s, h = an.params.scale, an.grid.h
    terr = str(rng.choice(["MCA", "MCA branch", "ACA", "PCA"], p=[0.45, 0.3, 0.1, 0.15]))
    if terr == "MCA":
        apex = (side * 17 * s, -2 * s, 1 * s)
        axis = (side * 1.0, rng.uniform(-0.3, 0.3), rng.uniform(0.0, 0.45))
        vol = _loguniform(rng, 30, 150)
    elif terr == "MCA branch":
        apex = (side * 28 * s, rng.uniform(-25, 25) * s, rng.uniform(0, 25) * s)
        axis = (side * 1.0, rng.uniform(-0.6, 0.6), rng.uniform(-0.1, 0.9))
        vol = _loguniform(rng, 10, 40)
    elif terr == "ACA":
        apex = (side * 4 * s, -6 * s, 22 * s)
        axis = (side * 0.2, rng.uniform(-0.7, -0.1), 1.0)
        vol = _loguniform(rng, 10, 50)
    else:
        apex = (side * 12 * s, 20 * s, -4 * s)
        axis = (side * 0.35, 1.0, rng.uniform(-0.3, 0.2))
        vol = _loguniform(rng, 15, 70)
    axis = np.asarray(axis, float)
    axis /= np.linalg.norm(axis)
    sl, (z, y, x) = _crop(an, apex, 100.0)
    qx, qy, qz = x - F32(apex[0]), y - F32(apex[1]), z - F32(apex[2])
    L = np.sqrt(qx * qx + qy * qy + qz * qz) + F32(1e-3)
    theta = np.arccos(np.clip((qx * axis[0] + qy * axis[1] + qz * axis[2]) / L, -1, 1)).astype(F32)
    noise = coarse_noise(rng, theta.shape, 9.0 / h) * F32(3.0)
    tissue = an.paren[sl] * an.cerebrum[sl] * _hemisphere(an, sl, side)
    swell = float(rng.uniform(0.0, swell_max))
    support = tissue + F32(swell) * an.csf_surface[sl] * _hemisphere(an, sl, side)

    def wedge(tmax, stride=1):
        st = (slice(None, None, stride),) * 3
        return soft_in((theta[st] - F32(tmax)) * L[st] + noise[st], h * stride)

    # bisection on the half-angle for the target volume, on a coarse copy
    lo, hi = 0.05, 1.4
    sup2 = support[::2, ::2, ::2]
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        v = float((wedge(mid, 2) * sup2).sum(dtype=np.float64)) * (2 * h) ** 3 / 1000.0
        lo, hi = (mid, hi) if v < vol else (lo, mid)
    frac = wedge(0.5 * (lo + hi)) * support
    return terr, sl, frac, support, tissue, swell, float(np.degrees(0.5 * (lo + hi)))


def _infarct_drop(an: Anatomy, p: _Painter, rng, sl, weight, tissue, delta: float) -> tuple[np.ndarray, float]:
    """The HU an acute infarct takes from the tissue under `weight` (its fraction in the crop `sl`):
    `delta` in white matter and more in grey matter, so the grey-white contrast is lost inside it; at
    an ill-defined margin (the domain's infarct_edge_mm) the drop fades out over ~edge mm, within
    `tissue`, while the label stays where the fraction is >= 0.5. Returns (drop, edge mm)."""
    H = an.params.hu
    d_gm = delta + min(12.0, max(0.0, 0.5 * (H["gm"] - H["wm"])))
    drop = weight * (F32(delta) + an.gm[sl] * F32(d_gm - delta))
    edge = float(rng.uniform(*p.r.infarct_edge_mm))
    if edge > 0.3:
        from scipy import ndimage

        drop = ndimage.gaussian_filter(drop, edge / an.grid.h) * tissue
    return drop, edge


def _territorial(an: Anatomy, p: _Painter, rng, side: int) -> Lesion | None:
    terr, sl, frac, support, tissue, swell, half = _wedge(an, rng, side)
    delta = p.infarct_delta(rng)
    les = p.add(Lesion(INFARCT, "territorial", f"{terr} {_side_name(side)}", sl, frac,
                       {"delta_hu": round(delta, 1), "half_angle_deg": round(half, 1)}))
    if les is None:
        return None
    H = an.params.hu
    w = les.frac / np.maximum(support, F32(1e-6))  # the wedge weight actually kept
    hu = an.hu[sl]
    drop, _ = _infarct_drop(an, p, rng, sl, w * tissue, tissue, delta)
    hu -= drop
    hu += w * F32(swell) * an.csf_surface[sl] * _hemisphere(an, sl, side) * F32(H["wm"] - delta - H["csf"])
    return les


def _random_parenchyma_point(an: Anatomy, rng, side: int) -> np.ndarray:
    """A point (x, y, z mm) drawn uniformly from one side's parenchyma, cerebellum and brainstem included."""
    g = an.grid
    st = (slice(None, None, 3),) * 3
    z, y, x = g.zyx()
    z, y, x = z[st[0]], y[:, st[1]], x[:, :, st[2]]
    ok = (an.paren[st] > 0.8) & ((x - an.x_mid(y)) * side > 2.0)
    k = np.flatnonzero(ok)
    i = np.unravel_index(int(k[rng.integers(0, len(k))]), ok.shape)
    return np.array([float(x[0, 0, i[2]]), float(y[0, i[1], 0]), float(z[i[0], 0, 0])]) + rng.uniform(-1.5, 1.5, 3)


def _shapeless(an: Anatomy, p: _Painter, rng, side: int) -> Lesion | None:
    """An acute infarct of no vascular shape: a lobulated blob (1-3 ellipsoids, noisy border) of
    2-80 mL anywhere in one side's parenchyma, cerebellum and brainstem included, darker than the
    tissue it replaces by the domain's infarct drop (grey matter more, as in a territorial infarct).
    Domain randomisation of the lesion's shape and site (SynthConfig.shapeless_infarct_prob): what is
    left to learn is the relative hypodensity, not the territory it usually fills."""
    h = an.grid.h
    vol = _loguniform(rng, 2.0, 80.0)
    for _ in range(8):
        c = _random_parenchyma_point(an, rng, side)
        sl, d = _blob(an, rng, c, vol)
        frac = soft_in(d, h) * an.paren[sl]
        if p.free(sl, frac):
            break
    delta = p.infarct_delta(rng)
    les = p.add(Lesion(INFARCT, "shapeless", f"parenchyma {_side_name(side)}", sl, frac, {"delta_hu": round(delta, 1)}))
    if les is None:
        return None
    drop, edge = _infarct_drop(an, p, rng, sl, les.frac, an.paren[sl], delta)
    an.hu[sl] -= drop
    les.params["edge_mm"] = round(edge, 2)
    return les


def _old_infarct(an: Anatomy, p: _Painter, rng, side: int) -> None:
    """Mimic: chronic infarct (encephalomalacia), close to CSF density, with ex-vacuo sulcal widening.

    Shaped like an acute territorial infarct but far darker (near CSF); it is NOT labelled, so the
    network must learn that an acute infarct is a subtle hypodensity, not any dark territory.
    """
    terr, sl, frac, support, tissue, _, _ = _wedge(an, rng, side, swell_max=0.0)
    frac = frac * (1.0 - np.minimum(p.occ[sl], 1.0))  # never over a labelled lesion
    if float(frac.sum()) * an.grid.h ** 3 / 1000.0 < 0.5:
        return
    H = an.params.hu
    frac *= F32(rng.uniform(0.5, 1.0))  # partly shrunken: some of the territory keeps tissue
    target = F32(H["csf"] + rng.uniform(0.0, 6.0))
    hu = an.hu[sl]
    hu += frac * (target - hu)
    p.mimics.append({"kind": "old_infarct", "location": f"{terr} {_side_name(side)}",
                     "volume_ml": round(float(frac.sum(dtype=np.float64)) * an.grid.h ** 3 / 1000.0, 2)})


def _deep_point(an: Anatomy, rng, side: int, names) -> np.ndarray:
    name = str(rng.choice(names))
    c = an.centres[f"{name}_{side}"]
    r = an.centres[f"{name}_{side}_r"]
    return c + rng.uniform(-0.4, 0.4, 3) * r


def _lacune(an: Anatomy, p: _Painter, rng, side: int) -> Lesion | None:
    h, s = an.grid.h, an.params.scale
    vol = _loguniform(rng, 0.12, 2.0)
    r_eq = (3 * vol * 1000 / (4 * np.pi)) ** (1 / 3)
    if rng.random() < 0.7:
        c = _deep_point(an, rng, side, ["lentiform", "thalamus", "caudate"])
        where = "deep grey"
    else:
        c = np.array([side * rng.uniform(18, 26) * s, rng.uniform(-20, 20) * s, rng.uniform(26, 34) * s])
        where = "corona radiata"
    rr = r_eq * rng.uniform(0.8, 1.25, 3)
    rr *= r_eq / np.prod(rr) ** (1 / 3)
    for _ in range(6):
        sl, d = ellipsoid(an.grid, c, rr, rot_matrix(*rng.uniform(-40, 40, 3)))
        frac = soft_in(d, h) * an.paren[sl] * an.cerebrum[sl]
        if p.free(sl, frac):
            break
        c = c + rng.uniform(-6, 6, 3)
    lo, hi = p.r.infarct_delta_hu
    delta = float(rng.uniform(max(lo, 5.0), max(hi, 12.0)))
    les = p.add(Lesion(INFARCT, "lacune", f"{where} {_side_name(side)}", sl, frac, {"delta_hu": round(delta, 1)}))
    if les is not None:
        an.hu[sl] -= les.frac * F32(delta)
    return les


def _blob(an: Anatomy, rng, c, vol):
    """Lobulated haematoma: union of 1-3 ellipsoids with a noisy border; returns (sl, d)."""
    h = an.grid.h
    r_eq = (3 * vol * 1000 / (4 * np.pi)) ** (1 / 3)
    half = 2.2 * r_eq + 12
    sl, (z, y, x) = _crop(an, c, half)
    d = None
    for k in range(int(rng.integers(1, 4))):
        off = np.zeros(3) if k == 0 else rng.normal(0, 0.45 * r_eq, 3)
        rr = r_eq * rng.uniform(0.65, 1.2, 3) * (1.0 if k == 0 else 0.7)
        _, dk = ellipsoid(an.grid, np.asarray(c) + off, rr, rot_matrix(*rng.uniform(-90, 90, 3)), pad=half)
        dk = _fit(dk, sl, _, an)
        d = dk if d is None else np.minimum(d, dk)
    d = d + coarse_noise(rng, d.shape, max(2.0, 0.4 * r_eq) / h) * F32(min(3.0, 0.15 * r_eq))
    return sl, d


def _fit(dk, sl_target, sl_k, an):
    """Place an ellipsoid distance computed on its own crop into the target crop (outside = far)."""
    out = np.full(tuple(s.stop - s.start for s in sl_target), F32(1e3), F32)
    src, dst = [], []
    for a, b in zip(sl_target, sl_k):
        lo, hi = max(a.start, b.start), min(a.stop, b.stop)
        dst.append(slice(lo - a.start, max(lo, hi) - a.start))
        src.append(slice(lo - b.start, max(lo, hi) - b.start))
    out[tuple(dst)] = dk[tuple(src)]
    return out


def _parenchymal_hemorrhage(an: Anatomy, p: _Painter, rng, side: int, kind: str) -> Lesion | None:
    h, s = an.grid.h, an.params.scale
    if kind == "deep":
        vol = _loguniform(rng, 2, 40)
    else:
        vol = _loguniform(rng, 2, 80)
    for _ in range(8):
        if kind == "deep":
            c = _deep_point(an, rng, side, ["lentiform", "lentiform", "thalamus"])
            where = "basal ganglia/thalamus"
        else:
            c = _lobar_point(an, rng, side)
            where = "lobar"
        sl, d = _blob(an, rng, c, vol)
        cav = an.cav[sl] * an.cerebrum[sl] * _hemisphere(an, sl, side)
        frac = soft_in(d, h) * cav
        if p.free(sl, frac):
            break
    blood = p.blood_hu(rng)
    les = p.add(Lesion(HEMORRHAGE, kind, f"{where} {_side_name(side)}", sl, frac, {"hu": round(blood, 1)}))
    if les is None:
        return None
    # oedema rim (not labelled), then the clot itself with mild internal heterogeneity
    w_e = float(rng.uniform(2.0, 8.0))
    d_e = float(rng.uniform(4.0, 10.0))
    rim = soft_in(d - w_e, h) * (1 - soft_in(d, h)) * an.paren[sl]
    hu = an.hu[sl]
    hu -= rim * F32(d_e)
    clot = F32(blood) + coarse_noise(rng, d.shape, 3.0 / h) * F32(3.0)
    hu += les.frac * (clot - hu)
    les.params.update({"oedema_mm": round(w_e, 1), "oedema_delta_hu": round(d_e, 1)})
    return les


def _lobar_point(an: Anatomy, rng, side: int) -> np.ndarray:
    g = an.grid
    st = (slice(None, None, 3),) * 3
    z, y, x = g.zyx()
    ok = ((an.depth[st] > 8) & (an.depth[st] < 24) & (an.cerebrum[st] > 0.99) & (an.paren[st] > 0.99)
          & (an.gm[st] < 0.5) & ((side * (x - an.x_mid(y)))[st] > 10))
    idx = np.flatnonzero(ok)
    if idx.size == 0:  # a very small or atrophic hemisphere: fall back to the deep white matter
        return np.array([side * 24.0 * an.params.scale, 0.0, 28.0 * an.params.scale])
    k = np.unravel_index(idx[int(rng.integers(len(idx)))], ok.shape)
    return np.array([x[0, 0, k[2] * 3], y[0, k[1] * 3, 0], z[k[0] * 3, 0, 0]], float)


def _ivh(an: Anatomy, p: _Painter, rng, gravity: np.ndarray) -> Lesion | None:
    """Blood layering in the most dependent parts of the ventricles (gravity: acquired +y in the head frame)."""
    g, h = an.grid, an.grid.h
    vent = an.vent
    nz = np.nonzero(vent > 0.01)
    lo = [int(i.min()) for i in nz]
    hi = [int(i.max()) + 1 for i in nz]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    z, y, x = g.zyx(sl)
    dep = (x * F32(gravity[0]) + y * F32(gravity[1]) + z * F32(gravity[2])).astype(F32)
    v = vent[sl]
    total = float(v.sum(dtype=np.float64)) * h ** 3 / 1000
    target = min(float(rng.uniform(1.0, 12.0)), 0.5 * total)
    order = np.argsort(-dep.ravel())
    cum = np.cumsum(v.ravel()[order], dtype=np.float64) * h ** 3 / 1000
    level = float(dep.ravel()[order][min(np.searchsorted(cum, target), len(order) - 1)])
    frac = v * soft_in(level - dep, h)
    blood = min(p.blood_hu(rng), 85.0)
    les = p.add(Lesion(HEMORRHAGE, "intraventricular", "dependent ventricles", sl, frac, {"hu": round(blood, 1)}))
    if les is not None:
        an.hu[sl] += les.frac * (F32(blood) - an.hu[sl])
    return les


def _angle_field(an: Anatomy, sl, u0: np.ndarray) -> np.ndarray:
    """Angle (radians) between each voxel's direction from the head centre and the unit vector u0."""
    z, y, x = an.grid.zyx(sl)
    r = np.sqrt(x * x + y * y + z * z) + F32(1e-3)
    c = (x * F32(u0[0]) + y * F32(u0[1]) + z * F32(u0[2])) / r
    return np.arccos(np.clip(c, -1.0, 1.0)).astype(F32)


def _convexity_dir(rng, side: int, kind: str) -> np.ndarray:
    if kind == "epidural":  # mostly temporo-parietal (middle meningeal artery), also frontal/occipital
        u = np.array([side * rng.uniform(0.5, 1.0), rng.uniform(-0.8, 0.6), rng.uniform(-0.3, 0.6)])
    else:
        u = np.array([side * rng.uniform(0.35, 1.0), rng.uniform(-0.9, 0.9), rng.uniform(-0.2, 0.9)])
    return u / np.linalg.norm(u)


def _hemi_crop(an: Anatomy, side: int):
    """The grid half (one side of x = 0, with a 12 mm overlap) as index slices."""
    g = an.grid
    x = g.axis(0)
    keep = np.flatnonzero(side * x > -12.0)
    return (slice(0, g.shape[0]), slice(0, g.shape[1]), slice(int(keep[0]), int(keep[-1]) + 1))


def _paint_blood(an: Anatomy, les: Lesion, blood: float, rng, heterogeneity: float = 3.0, swirl: float = 0.0) -> None:
    """Blood replaces what the lesion fraction covers; optional hyperacute 'swirl' (darker unclotted blood)."""
    h = an.grid.h
    clot = F32(blood) + coarse_noise(rng, les.frac.shape, 3.0 / h) * F32(heterogeneity)
    if swirl > 0:
        blobs = np.clip(coarse_noise(rng, les.frac.shape, 5.0 / h) - 0.8, 0.0, 1.0)
        clot -= blobs * F32(swirl)
    hu = an.hu[les.sl]
    hu += les.frac * (clot - hu)


def _extra_axial(an: Anatomy, p: _Painter, rng, side: int, kind: str) -> Lesion | None:
    """Subdural crescent over the convexity (or along the falx) / epidural biconvex lens, at the inner table."""
    h, s = an.grid.h, an.params.scale
    if kind == "subdural" and rng.random() < 0.25:
        return _falx_subdural(an, p, rng, side)
    sl = _hemi_crop(an, side)
    u0 = _convexity_dir(rng, side, kind)
    alpha = _angle_field(an, sl, u0)
    if kind == "subdural":
        amax = np.deg2rad(rng.uniform(28.0, 70.0))
        tmax = _loguniform(rng, 1.8, 16.0)
        prof = np.clip(1.0 - (alpha / F32(amax)) ** 2, 0.0, 1.0) ** F32(0.6)
    else:
        amax = np.deg2rad(rng.uniform(13.0, 32.0))
        tmax = _loguniform(rng, 5.0, 26.0)
        prof = np.sqrt(np.clip(1.0 - (alpha / F32(amax)) ** 2, 0.0, 1.0))
    wob = 1.0 + F32(0.15) * coarse_noise(rng, alpha.shape, 12.0 / h)
    t = F32(tmax * s) * prof * wob
    depth = an.table_depth[sl]
    frac = soft_in(depth - t, h) * (t > F32(0.3 * h)) * an.cav[sl] * _hemisphere(an, sl, side)
    if kind == "subdural":
        frac *= 1.0 - an.vent[sl]
    name = "convexity" if kind == "subdural" else "convexity (epidural)"
    les = p.add(Lesion(HEMORRHAGE, kind, f"{name} {_side_name(side)}", sl, frac.astype(F32),
                       {"max_thickness_mm": round(float(tmax * s), 1), "half_angle_deg": round(float(np.degrees(amax)), 1)}))
    if les is None:
        return None
    blood = p.blood_hu(rng)
    _paint_blood(an, les, blood, rng, swirl=float(rng.uniform(8, 25)) if rng.random() < 0.3 else 0.0)
    les.params["hu"] = round(blood, 1)
    return les


def _falx_subdural(an: Anatomy, p: _Painter, rng, side: int) -> Lesion | None:
    """Interhemispheric subdural blood: a thin sheet beside the falx, tapering at its ends."""
    h, s = an.grid.h, an.params.scale
    g = an.grid
    y0 = float(rng.uniform(-55.0, 45.0)) * s
    half_y = float(rng.uniform(15.0, 45.0)) * s
    tw = float(rng.uniform(1.5, 5.5))
    sl = g.box((-20.0, y0 - half_y - 5, -10.0 * s), (20.0, y0 + half_y + 5, 90.0 * s))
    z, y, x = g.zyx(sl)
    xm = an.x_mid(y)
    along = np.clip(1.0 - ((y - F32(y0)) / F32(half_y)) ** 2, 0.0, 1.0) ** F32(0.5)
    above_cc = soft_in(F32(22.0 * s) - z, h)  # above the corpus callosum
    both = rng.random() < 0.4
    off = np.abs(x - xm) if both else np.maximum(side * (x - xm), F32(0.0)) + (side * (x - xm) < 0) * F32(1e3)
    thick = F32(tw) * along * above_cc
    frac = soft_in(off - thick, h) * (thick > F32(0.3 * h)) * an.cav[sl] * an.cerebrum[sl] * (1.0 - an.vent[sl])
    les = p.add(Lesion(HEMORRHAGE, "subdural", "falx" + ("" if both else f" {_side_name(side)}"), sl, frac.astype(F32),
                       {"max_thickness_mm": round(tw, 1), "falx": True}))
    if les is None:
        return None
    blood = p.blood_hu(rng)
    _paint_blood(an, les, blood, rng)
    les.params["hu"] = round(blood, 1)
    return les


def _subarachnoid(an: Anatomy, p: _Painter, rng, side: int) -> Lesion | None:
    """Blood in the subarachnoid space: basal cisterns and fissures (aneurysmal) or convexity sulci (traumatic).

    The blood fraction of a voxel is the share of its CSF that the blood fills, so thin sulci at thick
    slices only become label where the blood dominates the voxel (the label rule, >= 0.5)."""
    h, s = an.grid.h, an.params.scale
    g = an.grid
    if rng.random() < 0.5:
        where = "basal cisterns"
        c = np.array([rng.uniform(-8, 8), rng.uniform(-15, 5), rng.uniform(-30, -10)]) * s
        rad = float(rng.uniform(30.0, 55.0)) * s
        sl = g.box(c - rad, c + rad)
        z, y, x = g.zyx(sl)
        d = np.sqrt((x - F32(c[0])) ** 2 + (y - F32(c[1])) ** 2 + (z - F32(c[2])) ** 2) / F32(rad)
        region = np.clip(1.0 - d * d, 0.0, 1.0)
        csf = np.maximum(an.cisterns[sl], F32(0.6) * an.sulci[sl])
    else:
        where = f"convexity sulci {_side_name(side)}"
        sl = _hemi_crop(an, side)
        u0 = _convexity_dir(rng, side, "subarachnoid")
        amax = np.deg2rad(rng.uniform(15.0, 40.0))
        alpha = _angle_field(an, sl, u0)
        region = np.clip(1.0 - (alpha / F32(amax)) ** 2, 0.0, 1.0) * _hemisphere(an, sl, side)
        csf = an.sulci[sl]
    fill = np.clip(F32(rng.uniform(0.7, 1.1)) * (region ** F32(0.5)) + F32(0.15) * coarse_noise(rng, region.shape, 6.0 / h), 0.0, 1.0)
    frac = (csf * fill * an.cav[sl] * (1.0 - an.vent[sl])).astype(F32)
    les = p.add(Lesion(HEMORRHAGE, "subarachnoid", where, sl, frac, {}))
    if les is None:
        return None
    blood = p.blood_hu(rng)
    hu = an.hu[les.sl]
    hu += les.frac * (F32(blood) - hu)
    les.params["hu"] = round(blood, 1)
    return les


def _contusion(an: Anatomy, p: _Painter, rng, side: int) -> Lesion | None:
    """A cortical contusion focus (frontal or temporal pole, or anywhere under the convexity)."""
    h, s = an.grid.h, an.params.scale
    region = str(rng.choice(["frontal", "temporal", "convexity"], p=[0.4, 0.4, 0.2]))
    g = an.grid
    st = (slice(None, None, 3),) * 3
    z, y, x = g.zyx()
    z, y, x = z[st[0]], y[:, st[1]], x[:, :, st[2]]
    ok = (an.depth[st] > 0.5) & (an.depth[st] < 10.0) & (an.paren[st] > 0.9) & (an.cerebrum[st] > 0.9) & ((side * x) > 8)
    if region == "frontal":
        ok &= y < -40.0 * s
    elif region == "temporal":
        ok &= (z < -5.0 * s) & (y < 5.0 * s) & (np.abs(x) > 30.0 * s)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return None
    k = np.unravel_index(idx[int(rng.integers(len(idx)))], ok.shape)
    c = np.array([x[0, 0, k[2]], y[0, k[1], 0], z[k[0], 0, 0]], float)
    vol = _loguniform(rng, 0.15, 8.0)
    sl, d = _blob(an, rng, c, vol)
    frac = soft_in(d, h) * an.paren[sl] * an.cav[sl]
    les = p.add(Lesion(HEMORRHAGE, "contusion", f"{region} {_side_name(side)}", sl, frac.astype(F32), {}))
    if les is None:
        return None
    rim = soft_in(d - float(rng.uniform(1.5, 6.0)), h) * (1 - soft_in(d, h)) * an.paren[sl]
    hu = an.hu[sl]
    hu -= rim * F32(rng.uniform(3.0, 10.0))
    blood = p.blood_hu(rng)
    _paint_blood(an, les, blood, rng, heterogeneity=float(rng.uniform(3.0, 10.0)))  # salt-and-pepper
    les.params["hu"] = round(blood, 1)
    return les


def draw_lesion_plan(rng, mode: str, lesion_free_fraction: float, shapeless_prob: float = 0.0) -> list[str]:
    """Which lesions a case gets: a list of kinds (may be empty). shapeless_prob: the share of
    territorial infarcts drawn as shapeless ones instead (0 draws nothing more from rng, so plans
    made before it existed are unchanged)."""
    if mode == "none":
        return []
    if mode == "both":
        lf = lesion_free_fraction
        mode = str(rng.choice(["none", "infarct", "hemorrhage", "both"], p=[lf, (1 - lf) * 0.4, (1 - lf) * 0.4, (1 - lf) * 0.2]))
        if mode == "none":
            return []
    plan: list[str] = []
    if mode in ("infarct", "both"):
        if rng.random() < 0.8:
            plan.append("shapeless" if shapeless_prob > 0 and rng.random() < shapeless_prob else "territorial")
        plan += ["lacune"] * int(rng.poisson(0.7))
        if not plan:
            plan.append("lacune")
    if mode in ("hemorrhage", "both"):
        main = str(rng.choice(list(HEMORRHAGE_KINDS), p=[0.2, 0.18, 0.07, 0.25, 0.1, 0.1, 0.1]))
        plan.append(main)
        if main == "deep" and rng.random() < 0.35:
            plan.append("intraventricular")
        if main in ("subdural", "epidural", "contusion"):  # trauma: blood rarely comes alone
            for extra, prob in (("contusion", 0.35), ("subarachnoid", 0.3), ("subdural", 0.2)):
                if rng.random() < prob:
                    plan.append(extra)
        if main == "contusion":
            plan += ["contusion"] * int(rng.poisson(1.0))
        if rng.random() < 0.1:
            plan.append("lobar")
    return plan


def draw_mimic_plan(rng, ranges: DomainRanges) -> list[str]:
    """Unlabelled look-alikes drawn into the anatomy after the lesions (scanner artefacts are separate)."""
    return ["old_infarct"] if rng.random() < ranges.old_infarct_prob else []


def add_lesions(an: Anatomy, rng, plan: list[str], gravity: np.ndarray, ranges: DomainRanges | None = None,
                mimics: list[str] | None = None) -> tuple[list[Lesion], list[dict]]:
    """Draw the planned lesions, then the mimics, into an.hu (in place).

    Returns the lesions (with their truth fractions) and the mimics' descriptions.
    """
    p = _Painter(an, ranges)
    # blood first: larger, rarer objects that must not be trimmed by infarcts; extra-axial blood before
    # parenchymal (it lies over the cortex), subarachnoid last (it fills what CSF is left)
    rank = {"subdural": 0, "epidural": 0, "lobar": 1, "deep": 1, "intraventricular": 1, "contusion": 2, "subarachnoid": 3}
    order = sorted(plan, key=lambda k: rank.get(k, 4))
    for kind in order:
        side = int(rng.choice([-1, 1]))
        if kind == "territorial":
            _territorial(an, p, rng, side)
        elif kind == "lacune":
            _lacune(an, p, rng, side)
        elif kind == "shapeless":
            _shapeless(an, p, rng, side)
        elif kind in ("lobar", "deep"):
            _parenchymal_hemorrhage(an, p, rng, side, kind)
        elif kind == "intraventricular":
            _ivh(an, p, rng, gravity)
        elif kind in ("subdural", "epidural"):
            _extra_axial(an, p, rng, side, kind)
        elif kind == "subarachnoid":
            _subarachnoid(an, p, rng, side)
        elif kind == "contusion":
            _contusion(an, p, rng, side)
    for kind in mimics or []:
        if kind == "old_infarct":
            _old_infarct(an, p, rng, int(rng.choice([-1, 1])))
    return p.lesions, p.mimics
