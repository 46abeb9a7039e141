"""Stroke lesions drawn into the canonical head: the exact truth fraction plus the HU change they cause.

Each lesion is a partial-volume fraction field on a crop of the canonical grid (1 = lesion). The
image change is driven by the same field, so image and truth agree. Lesions never overlap (their
fractions sum to at most 1 everywhere), which makes the per-lesion volumes add up to the class volume.

* infarct (label 1): territorial wedges (MCA, MCA branch, ACA, PCA) from a deep apex out to the cortex,
  hypodense by 3-12 HU with loss of grey-white contrast and sulcal effacement; lacunes 0.1-2 mL.
* hemorrhage (label 2): lobar and deep (basal ganglia, thalamus) haematomas 50-90 HU with an unlabelled
  hypodense oedema rim; intraventricular blood that layers in the dependent ventricles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdpm_cli.synth.anatomy import Anatomy
from sdpm_cli.synth.fields import F32, coarse_noise, ellipsoid, rot_matrix, soft_in

INFARCT, HEMORRHAGE = 1, 2


@dataclass
class Lesion:
    cls: int                # 1 infarct, 2 hemorrhage
    kind: str               # territorial | lacune | lobar | deep | intraventricular
    location: str
    sl: tuple               # crop of the canonical grid
    frac: np.ndarray        # truth fraction in the crop
    params: dict = field(default_factory=dict)
    volume_ml: float = 0.0  # filled in on the acquired grid (label voxels x voxel volume)

    def canonical_ml(self, h: float) -> float:
        return float(self.frac.sum(dtype=np.float64) * h ** 3 / 1000.0)


def _loguniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _side_name(side: int) -> str:
    return "left" if side > 0 else "right"  # +x is the patient's left (LPS)


class _Painter:
    """Keeps the lesions disjoint and applies their HU changes to the anatomy in place."""

    def __init__(self, an: Anatomy):
        self.an = an
        self.occ = np.zeros(an.grid.shape, F32)
        self.lesions: list[Lesion] = []

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


def _territorial(an: Anatomy, p: _Painter, rng, side: int) -> Lesion | None:
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
    swell = float(rng.uniform(0.0, 0.8))
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
    w = wedge(0.5 * (lo + hi))
    frac = w * support
    delta = float(rng.uniform(3.0, 12.0))
    les = p.add(Lesion(INFARCT, "territorial", f"{terr} {_side_name(side)}", sl, frac,
                       {"delta_hu": round(delta, 1), "half_angle_deg": round(float(np.degrees(0.5 * (lo + hi))), 1)}))
    if les is None:
        return None
    H = an.params.hu
    w = les.frac / np.maximum(support, F32(1e-6))  # the wedge weight actually kept
    d_gm = float(np.clip(delta + 0.5 * (H["gm"] - H["wm"]), 3.0, 12.0))
    d_vox = F32(delta) + an.gm[sl] * F32(d_gm - delta)
    hu = an.hu[sl]
    hu -= w * tissue * d_vox
    hu += w * F32(swell) * an.csf_surface[sl] * _hemisphere(an, sl, side) * F32(H["wm"] - delta - H["csf"])
    return les


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
    delta = float(rng.uniform(5.0, 12.0))
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
    blood = float(rng.uniform(50.0, 90.0))
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
    blood = float(rng.uniform(50.0, 75.0))
    les = p.add(Lesion(HEMORRHAGE, "intraventricular", "dependent ventricles", sl, frac, {"hu": round(blood, 1)}))
    if les is not None:
        an.hu[sl] += les.frac * (F32(blood) - an.hu[sl])
    return les


def draw_lesion_plan(rng, mode: str, lesion_free_fraction: float) -> list[str]:
    """Which lesions a case gets: a list of kinds (may be empty)."""
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
            plan.append("territorial")
        plan += ["lacune"] * int(rng.poisson(0.7))
        if not plan:
            plan.append("lacune")
    if mode in ("hemorrhage", "both"):
        main = str(rng.choice(["lobar", "deep", "intraventricular"], p=[0.45, 0.4, 0.15]))
        plan.append(main)
        if main == "deep" and rng.random() < 0.35:
            plan.append("intraventricular")
        if rng.random() < 0.1:
            plan.append("lobar")
    return plan


def add_lesions(an: Anatomy, rng, plan: list[str], gravity: np.ndarray) -> list[Lesion]:
    """Draw the planned lesions into an.hu (in place); returns them with their truth fractions."""
    p = _Painter(an)
    # hemorrhages first: they are the larger, rarer objects and must not be trimmed by infarcts
    order = sorted(plan, key=lambda k: 0 if k in ("lobar", "deep", "intraventricular") else 1)
    for kind in order:
        side = int(rng.choice([-1, 1]))
        if kind == "territorial":
            _territorial(an, p, rng, side)
        elif kind == "lacune":
            _lacune(an, p, rng, side)
        elif kind in ("lobar", "deep"):
            _parenchymal_hemorrhage(an, p, rng, side, kind)
        elif kind == "intraventricular":
            _ivh(an, p, rng, gravity)
    return p.lesions
