"""Family B's stroke lesions on the atlas grid: exact truth fractions and the HU change they cause.

Independent of family A's lesion models. Each lesion is a partial-volume fraction on a crop of the
template grid; lesions never overlap (an occupancy map clips each new one), and the HU change is driven
by the same fraction, so image and truth agree.

label 1, infarct
  territorial  a cone from the territory's deep origin out to the cortex, inside an approximate arterial
               territory (ACA, MCA, PCA, cerebellar) in MNI space, 5-150 mL; distal branch occlusions
               spare the deep part. Parenchyma only (sulcal CSF stays CSF). Hypodense by 3-12 HU relative
               to the tissue it replaces, more in grey than in white matter (grey-white contrast lost).
  lacune       small deep infarcts (basal ganglia, thalamus, internal capsule, corona radiata, pons).
label 2, hemorrhage (any acute intracranial blood, 45-90 HU)
  lobar, deep  intraparenchymal haematomas (1-60 mL) with an irregular outline and an unlabelled
               hypodense oedema rim;
  intraventricular  blood layering in the dependent (gravity-side) ventricular CSF, or a cast;
  subdural     a crescent between the inner table and the brain over a large part of one convexity
               (2-15 mm), or along the falx; the brain beneath is compressed;
  epidural     a biconvex lens against the inner table (5-25 mm thick, limited extent), brain compressed;
  subarachnoid blood mixed into the sulcal/cisternal CSF of a region (truth where its fraction >= 0.5);
  contusion    small haemorrhagic cortical foci at the frontal and temporal poles, often several.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdpm_cli.synth.atlas._util import F32, ellipsoid_sd, loguniform, ramp, smooth_field
from sdpm_cli.synth.atlas.head import HEAD_CENTRE, Anatomy, Head, falx_edge
from sdpm_cli.synth.atlas.template import TERRITORIES, ras_to_lps, territory_map

INFARCT, HEMORRHAGE = 1, 2
INFARCT_KINDS = ("territorial", "lacune")
HEMORRHAGE_KINDS = ("lobar", "deep", "intraventricular", "subdural", "epidural", "subarachnoid", "contusion")
KINDS = INFARCT_KINDS + HEMORRHAGE_KINDS
LOCATION_CLASS = {"territorial": "intra-axial", "lacune": "intra-axial", "lobar": "intra-axial",
                  "deep": "intra-axial", "contusion": "intra-axial", "intraventricular": "intraventricular",
                  "subdural": "extra-axial", "epidural": "extra-axial", "subarachnoid": "subarachnoid"}


@dataclass
class Lesion:
    cls: int
    kind: str
    location: str
    sl: tuple                       # crop of the template grid
    frac: np.ndarray                # truth fraction in the crop
    centre: np.ndarray              # LPS mm (atlas)
    params: dict = field(default_factory=dict)
    region: np.ndarray | None = None  # infarct: the region fraction (its parenchyma is the truth)
    rim: np.ndarray | None = None     # unlabelled oedema rim (hu drop x rim)
    hu: float = 0.0
    volume_ml: float = 0.0            # set on the acquired grid

    @property
    def location_class(self) -> str:
        return LOCATION_CLASS[self.kind]

    def atlas_ml(self, h: float) -> float:
        return float(self.frac.sum(dtype=np.float64) * h ** 3 / 1000.0)


def _side_name(side: float) -> str:
    return "right" if side > 0 else "left"  # side +1 = RAS x > 0 = the patient's right


def _crop(an: Anatomy, c, half):
    c = np.asarray(c, float)
    half = np.broadcast_to(np.asarray(half, float), (3,))
    sl = an.tpl.box(c - half, c + half)
    return sl, an.tpl.zyx(sl)


class Painter:
    """Keeps lesions disjoint (an occupancy fraction on the template grid)."""

    def __init__(self, an: Anatomy):
        self.an = an
        self.occ = np.zeros(an.tpl.shape, F32)
        self.lesions: list[Lesion] = []

    def add(self, les: Lesion | None) -> Lesion | None:
        if les is None:
            return None
        les.frac = np.minimum(les.frac, 1.0 - self.occ[les.sl]).astype(F32)
        if les.atlas_ml(self.an.tpl.h) < 0.05:
            return None
        self.occ[les.sl] += les.frac
        self.lesions.append(les)
        return les


def _voxel_point(an: Anatomy, sl, k) -> np.ndarray:
    z, y, x = an.tpl.zyx(sl)
    return np.array([x[0, 0, k[2]], y[0, k[1], 0], z[k[0], 0, 0]], float)


def _random_point(an: Anatomy, rng, mask, sl) -> np.ndarray | None:
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    k = np.unravel_index(int(idx[rng.integers(idx.size)]), mask.shape)
    return _voxel_point(an, sl, k)


def _blob(an: Anatomy, rng, c, volume_ml: float, irregular: float = 0.18, elong=(0.75, 1.35)):
    """A soft, irregular ellipsoidal blob of about volume_ml around c: (sl, region fraction, radii)."""
    h = an.tpl.h
    r_eq = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    ax = rng.uniform(*elong, 3)
    ax /= np.prod(ax) ** (1.0 / 3.0)
    r = r_eq * ax
    rot = _random_rotation(rng)
    sl, (z, y, x) = _crop(an, c, r.max() * (1.0 + 3 * irregular) + 2 * h)
    sd = ellipsoid_sd(z, y, x, c, r, rot)
    shape = sd.shape
    if irregular > 0:
        sd = sd + smooth_field(rng, shape, [max(4, n // 6 + 3) for n in shape], irregular * r_eq)
    return sl, ramp(sd, h), r


def _random_rotation(rng) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


def _lobe(p_lps) -> str:
    x, y, z = -p_lps[0], -p_lps[1], p_lps[2]
    if z < -20 and y < -40:
        return "cerebellar"
    if y < -62:
        return "occipital"
    if abs(x) > 28 and z < 5 and y > -45:
        return "temporal"
    if y > -5:
        return "frontal"
    return "parietal"


# --- infarcts ---------------------------------------------------------------------------------------

_APEX_RAS = {"MCA": (18.0, 4.0, -6.0), "ACA": (5.0, 22.0, 0.0), "PCA": (14.0, -24.0, -8.0),
             "cerebellar": (10.0, -45.0, -38.0)}


def territorial(an: Anatomy, rng, head: Head, side: float | None = None, territory: str | None = None,
                volume_ml: float | None = None) -> Lesion | None:
    tpl, h = an.tpl, an.tpl.h
    side = float(side if side is not None else rng.choice([-1.0, 1.0]))
    territory = territory or str(rng.choice(["MCA", "ACA", "PCA", "cerebellar"], p=[0.6, 0.15, 0.2, 0.05]))
    tid = {v: k for k, v in TERRITORIES.items()}[territory]
    tmap = territory_map(h)
    z, y, x = tpl.zyx()
    hemi_mask = (tmap == tid) & ((-x * side) > 0.5)
    nz = [np.flatnonzero(hemi_mask.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1))]
    if any(v.size == 0 for v in nz):
        return None
    sl = tuple(slice(int(v[0]), int(v[-1]) + 1) for v in nz)
    del hemi_mask
    zc, yc, xc = tpl.zyx(sl)
    from scipy import ndimage

    terr = (tmap[sl] == tid) & ((-xc * side) > 0.5)
    tfrac = np.clip(ndimage.gaussian_filter(terr.astype(F32), 0.6), 0, 1) * (an.cav[sl] > 0)
    par = an.gm[sl] + an.wm[sl]
    apex = ras_to_lps((side * _APEX_RAS[territory][0],) + _APEX_RAS[territory][1:])
    # the target: a cortical point of the territory; the cone opens from the apex towards it
    cortex = terr & (par > 0.4) & (an.depth[sl] < 12.0) & (an.depth[sl] > 1.0)
    c = _random_point(an, rng, cortex, sl)
    if c is None:
        return None
    v = (c - apex) / np.linalg.norm(c - apex)
    dx, dy, dz = xc - F32(apex[0]), yc - F32(apex[1]), zc - F32(apex[2])
    dist = np.sqrt(dx * dx + dy * dy + dz * dz) + F32(1e-3)
    cosang = (dx * F32(v[0]) + dy * F32(v[1]) + dz * F32(v[2])) / dist
    ang = np.arccos(np.clip(cosang, -1.0, 1.0)).astype(F32)
    ang += smooth_field(rng, ang.shape, [max(4, n // 10 + 3) for n in ang.shape], 0.08)
    # distal (branch) occlusions spare the tissue near the origin
    distal = float(rng.uniform(0.0, 0.55)) if rng.random() < 0.6 else 0.0
    r_min = distal * float(np.linalg.norm(c - apex))
    near = ramp(r_min - dist, h) if r_min > 0 else np.ones_like(dist)
    w = (tfrac * par * near).ravel()
    total_ml = float(w.sum(dtype=np.float64)) * h ** 3 / 1000.0
    target = volume_ml if volume_ml is not None else loguniform(rng, 5.0, 150.0)
    target = min(target, 0.85 * total_ml)
    if target < 1.0:
        return None
    order = np.argsort(ang.ravel(), kind="stable")
    cum = np.cumsum(w[order], dtype=np.float64) * h ** 3 / 1000.0
    alpha = float(ang.ravel()[order][min(int(np.searchsorted(cum, target)), len(order) - 1)])
    region = ramp((ang - F32(alpha)) * dist, h) * near * tfrac
    frac = (region * par).astype(F32)
    wm_hu, gm_hu = head.hu["wm"], head.hu["gm"]
    d_w = float(rng.uniform(3.0, 9.0))
    d_g = float(np.clip(d_w + rng.uniform(0.5, 1.0) * (gm_hu - wm_hu), 3.0, 12.0))
    les = Lesion(INFARCT, "territorial", f"{_side_name(side)} {territory} territory", sl, frac, c,
                 params={"territory": territory, "side": _side_name(side), "distal": round(distal, 2),
                         "drop_wm_hu": round(d_w, 2), "drop_gm_hu": round(d_g, 2),
                         "target_ml": round(target, 2)}, region=region.astype(F32))
    return les


_LACUNE_SITES = {"putamen": (24.0, 2.0, 2.0), "thalamus": (12.0, -18.0, 6.0), "internal capsule": (20.0, -8.0, 8.0),
                 "corona radiata": (24.0, -10.0, 26.0), "caudate": (13.0, 12.0, 12.0), "pons": (5.0, -28.0, -32.0)}


def lacune(an: Anatomy, rng, head: Head, site: str | None = None) -> Lesion | None:
    site = site or str(rng.choice(list(_LACUNE_SITES)))
    side = float(rng.choice([-1.0, 1.0]))
    xr, yr, zr = _LACUNE_SITES[site]
    c = ras_to_lps((side * xr, yr, zr)) + rng.uniform(-3.0, 3.0, 3)
    sl, region, r = _blob(an, rng, c, loguniform(rng, 0.08, 1.5), irregular=0.1, elong=(0.7, 1.5))
    par = an.gm[sl] + an.wm[sl]
    frac = (region * par).astype(F32)
    d = float(rng.uniform(4.0, 12.0))
    return Lesion(INFARCT, "lacune", f"{_side_name(side)} {site}", sl, frac, c,
                  params={"drop_wm_hu": round(d, 2), "drop_gm_hu": round(d, 2)}, region=region)


# --- hemorrhage --------------------------------------------------------------------------------------

def _blood_hu(rng) -> float:
    return float(rng.uniform(45.0, 90.0))


def _haematoma(an: Anatomy, rng, c, volume_ml: float, kind: str, location: str) -> Lesion:
    h = an.tpl.h
    sl, region, r = _blob(an, rng, c, volume_ml, irregular=0.22)
    frac = (region * an.cav[sl] * (an.depth[sl] > 0.5)).astype(F32)
    rim = None
    params = {"radii_mm": [round(float(v), 1) for v in r]}
    if rng.random() < 0.7:  # perihaematomal oedema (unlabelled)
        from scipy import ndimage

        w = float(rng.uniform(2.0, 6.0))
        grown = np.clip(ndimage.gaussian_filter(region, w / h / 1.5) * 2.0, 0, 1)
        rim = np.clip(grown - region, 0, 1) * (an.gm[sl] + an.wm[sl])
        params["oedema_hu"] = round(float(rng.uniform(2.0, 8.0)), 2)
    les = Lesion(HEMORRHAGE, kind, location, sl, frac, np.asarray(c, float), params=params, rim=rim, hu=_blood_hu(rng))
    return les


def lobar(an: Anatomy, rng, head: Head, volume_ml: float | None = None) -> Lesion | None:
    tpl = an.tpl
    z, y, x = tpl.zyx()
    ok = (an.gm + an.wm > 0.7) & (an.depth > 8.0) & (an.depth < 25.0) & (z > -20.0) & (an.vent < 0.05)
    c = _random_point(an, rng, ok[:: 2, :: 2, :: 2], tuple(slice(0, None, 2) for _ in range(3)))
    if c is None:
        return None
    vol = volume_ml if volume_ml is not None else loguniform(rng, 1.0, 60.0)
    side = "right" if c[0] < 0 else "left"
    return _haematoma(an, rng, c, vol, "lobar", f"{side} {_lobe(c)} lobe")


_DEEP_SITES = {"putamen": ((24.0, 2.0, 2.0), 60.0), "thalamus": ((12.0, -18.0, 6.0), 40.0),
               "caudate": ((13.0, 12.0, 12.0), 25.0), "pons": ((3.0, -28.0, -32.0), 15.0),
               "cerebellum": ((22.0, -60.0, -35.0), 30.0)}


def deep(an: Anatomy, rng, head: Head, site: str | None = None, volume_ml: float | None = None) -> Lesion | None:
    site = site or str(rng.choice(list(_DEEP_SITES), p=[0.4, 0.25, 0.1, 0.1, 0.15]))
    (xr, yr, zr), vmax = _DEEP_SITES[site]
    side = float(rng.choice([-1.0, 1.0]))
    c = ras_to_lps((side * xr, yr, zr)) + rng.uniform(-3.0, 3.0, 3)
    vol = volume_ml if volume_ml is not None else loguniform(rng, 1.0, vmax)
    return _haematoma(an, rng, c, vol, "deep", f"{_side_name(side)} {site}")


def intraventricular(an: Anatomy, rng, head: Head, gravity: np.ndarray,
                     volume_ml: float | None = None) -> Lesion | None:
    tpl, h = an.tpl, an.tpl.h
    nz = [np.flatnonzero((an.vent > 0.05).any(axis=a)) for a in ((1, 2), (0, 2), (0, 1))]
    if any(v.size == 0 for v in nz):
        return None
    sl = tuple(slice(max(int(v[0]) - 1, 0), int(v[-1]) + 2) for v in nz)
    z, y, x = tpl.zyx(sl)
    vent = an.vent[sl]
    g = np.asarray(gravity, float) / np.linalg.norm(gravity)
    hgt = (x * F32(g[0]) + y * F32(g[1]) + z * F32(g[2])).astype(F32)  # larger = more dependent
    vent_ml = float(vent.sum(dtype=np.float64)) * h ** 3 / 1000.0
    cast = rng.random() < 0.2
    if cast:  # one lateral ventricle filled (a cast), plus layering elsewhere
        side = float(rng.choice([-1.0, 1.0]))
        sel = ramp(x * side + 1.0, h) * (z > -5.0)
        region = sel
        location = f"{_side_name(side)} lateral ventricle (cast)"
    else:
        target = volume_ml if volume_ml is not None else loguniform(rng, 1.0, 25.0)
        target = min(target, 0.6 * vent_ml)
        w = vent.ravel()
        order = np.argsort(-hgt.ravel(), kind="stable")
        cum = np.cumsum(w[order], dtype=np.float64) * h ** 3 / 1000.0
        level = float(hgt.ravel()[order][min(int(np.searchsorted(cum, target)), len(order) - 1)])
        region = ramp(F32(level) - hgt, h)
        location = "lateral ventricles, dependent layering (occipital horns)"
    frac = (vent * region).astype(F32)
    return Lesion(HEMORRHAGE, "intraventricular", location, sl, frac,
                  np.array([float(np.mean(x)), float(np.mean(y)), float(np.mean(z))]),
                  params={"cast": bool(cast), "gravity": [round(float(v), 3) for v in g]}, hu=_blood_hu(rng))


def _surface_point(an: Anatomy, rng, cond) -> np.ndarray | None:
    pts = an.tpl.surface
    x_ras, y_ras, z_ras = -pts[:, 0], -pts[:, 1], pts[:, 2]
    ok = np.flatnonzero(cond(x_ras, y_ras, z_ras))
    if ok.size == 0:
        return None
    return pts[int(ok[rng.integers(ok.size)])].astype(float)


def _normals(sd: np.ndarray, h: float):
    gz, gy, gx = np.gradient(sd, h)
    n = np.sqrt(gx * gx + gy * gy + gz * gz) + F32(1e-6)
    return gx / n, gy / n, gz / n


def _compress(an: Anatomy, sl, thick: np.ndarray, reach: float) -> None:
    """Push the brain under an extra-axial collection inward: depth u >= thick gets the tissue that was at
    depth (u - thick) * reach / (reach - thick) (sulci beneath are effaced, nothing is lost beyond reach)."""
    from scipy import ndimage

    tpl, h = an.tpl, an.tpl.h
    u = an.depth[sl]
    act = (thick > 0.2) & (u > -1.0) & (u < reach)
    if not act.any():
        return
    nx, ny, nz = _normals(tpl.sd[sl].astype(F32), h)
    t = np.minimum(thick, 0.8 * reach)
    s = np.where(u >= t, (u - t) * reach / (reach - t), u - t)  # source depth
    shift = (u - s)[act]  # move outwards by this much to find the source
    kz, ky, kx = np.nonzero(act)
    off = np.array([s_.start for s_ in sl], float)
    cz = kz + off[0] + nz[act] * shift / h
    cy = ky + off[1] + ny[act] * shift / h
    cx = kx + off[2] + nx[act] * shift / h
    coords = np.stack([cz, cy, cx])
    for arr in (an.gm, an.wm):
        vals = ndimage.map_coordinates(arr, coords, order=1, mode="nearest")
        sub = arr[sl]
        sub[act] = vals
    # compressed tissue cannot exceed the cavity
    par = an.gm[sl] + an.wm[sl]
    over = par > an.cav[sl]
    if over.any():
        k = np.where(over, an.cav[sl] / np.maximum(par, 1e-6), 1.0)
        an.gm[sl] *= k
        an.wm[sl] *= k


def subdural(an: Anatomy, rng, head: Head, site: str | None = None, thickness_mm: float | None = None) -> Lesion | None:
    tpl, h = an.tpl, an.tpl.h
    site = site or ("falx" if rng.random() < 0.15 else "convexity")
    side = float(rng.choice([-1.0, 1.0]))
    blood = _blood_hu(rng)
    if site == "falx":
        th = thickness_mm or float(rng.uniform(2.0, 6.0))
        y_mid = float(rng.uniform(-50.0, 30.0))
        length = float(rng.uniform(40.0, 90.0))
        c = ras_to_lps((side * th / 2, y_mid, 45.0))
        sl, (z, y, x) = _crop(an, c, (th + 4 * h, length / 2 + 4, 50.0))
        xr, yr = -x, -y
        z_edge = falx_edge(yr[0, :, 0])[None, :, None]
        region = (ramp(-(xr * side), h) * ramp(xr * side - th, h) * ramp(z_edge - z, h)
                  * ramp(np.abs(yr - y_mid) - length / 2, h))
        frac = (region * an.cav[sl] * (an.depth[sl] > 2.0)).astype(F32)
        return Lesion(HEMORRHAGE, "subdural", f"interhemispheric, {_side_name(side)} of the falx", sl, frac, c,
                      params={"site": "falx", "thickness_mm": round(th, 2), "length_mm": round(length, 1)}, hu=blood)
    c = _surface_point(an, rng, lambda xr, yr, zr: (xr * side > 40) & (zr > -15) & (zr < 55) & (yr > -80) & (yr < 45))
    if c is None:
        return None
    th_max = thickness_mm or float(rng.uniform(2.0, 15.0))
    extent = float(np.deg2rad(rng.uniform(40.0, 70.0)))
    n_c = (c - np.asarray(HEAD_CENTRE)) / np.linalg.norm(c - np.asarray(HEAD_CENTRE))
    # the crop: surface points of the patch, grown by the reach of the compression
    sp = tpl.surface - np.asarray(HEAD_CENTRE)
    near = sp @ n_c / np.linalg.norm(sp, axis=1) > np.cos(min(extent * 1.15, np.pi / 2))
    lo, hi = tpl.surface[near].min(axis=0) - 33.0, tpl.surface[near].max(axis=0) + 33.0
    sl = tpl.box(lo, hi)
    z, y, x = tpl.zyx(sl)
    dx, dy, dz = x - F32(HEAD_CENTRE[0]), y - F32(HEAD_CENTRE[1]), z - F32(HEAD_CENTRE[2])
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + F32(1e-3)
    ang = np.arccos(np.clip((dx * F32(n_c[0]) + dy * F32(n_c[1]) + dz * F32(n_c[2])) / r, -1, 1))
    ang = ang + smooth_field(rng, ang.shape, [max(4, n // 12 + 3) for n in ang.shape], 0.06)
    t = np.clip(1.0 - (ang / F32(extent)) ** 2, 0.0, 1.0)
    thick = (F32(th_max) * np.sqrt(t) * (-x * side > 2.0)).astype(F32)  # a crescent, not across the midline
    _compress(an, sl, thick, reach=30.0)
    u = an.depth[sl]
    frac = (ramp(u - thick, h) * (thick > 0.3) * an.cav[sl]).astype(F32)
    return Lesion(HEMORRHAGE, "subdural", f"{_side_name(side)} {_lobe(c)} convexity", sl, frac, c,
                  params={"site": "convexity", "thickness_mm": round(th_max, 2),
                          "extent_deg": round(float(np.rad2deg(extent)), 1)}, hu=blood)


def epidural(an: Anatomy, rng, head: Head, thickness_mm: float | None = None) -> Lesion | None:
    h = an.tpl.h
    side = float(rng.choice([-1.0, 1.0]))
    temporal = rng.random() < 0.6
    if temporal:
        cond = lambda xr, yr, zr: (xr * side > 45) & (zr > -25) & (zr < 25) & (yr > -40) & (yr < 25)  # noqa: E731
    else:
        cond = lambda xr, yr, zr: (xr * side > 15) & (zr > 10) & (zr < 65) & (yr > -85) & (yr < 55)  # noqa: E731
    c = _surface_point(an, rng, cond)
    if c is None:
        return None
    th_max = thickness_mm or float(rng.uniform(5.0, 25.0))
    rad = float(rng.uniform(22.0, 40.0))
    n_c = (c - np.asarray(HEAD_CENTRE)) / np.linalg.norm(c - np.asarray(HEAD_CENTRE))
    sl, (z, y, x) = _crop(an, c - n_c * th_max / 2, rad + th_max + 6.0)
    dx, dy, dz = x - F32(c[0]), y - F32(c[1]), z - F32(c[2])
    along = dx * F32(n_c[0]) + dy * F32(n_c[1]) + dz * F32(n_c[2])
    lat2 = np.maximum(dx * dx + dy * dy + dz * dz - along * along, 0.0)
    thick = (F32(th_max) * np.clip(1.0 - lat2 / F32(rad * rad), 0.0, 1.0)).astype(F32)  # a lens
    _compress(an, sl, thick, reach=40.0)
    u = an.depth[sl]
    frac = (ramp(u - thick, h) * (thick > 0.3) * an.cav[sl]).astype(F32)
    return Lesion(HEMORRHAGE, "epidural", f"{_side_name(side)} {_lobe(c)} convexity", sl, frac, c,
                  params={"thickness_mm": round(th_max, 2), "radius_mm": round(rad, 1)}, hu=_blood_hu(rng))


def subarachnoid(an: Anatomy, rng, head: Head, site: str | None = None) -> Lesion | None:
    h = an.tpl.h
    site = site or str(rng.choice(["basal cisterns", "sylvian fissure", "convexity sulci", "interhemispheric fissure"],
                                  p=[0.35, 0.3, 0.25, 0.1]))
    side = float(rng.choice([-1.0, 1.0]))
    if site == "basal cisterns":
        c = ras_to_lps((0.0, -8.0, -14.0))
        rad = float(rng.uniform(22.0, 32.0))
        location = "basal cisterns"
    elif site == "sylvian fissure":
        c = ras_to_lps((side * 38.0, 0.0, -5.0))
        rad = float(rng.uniform(18.0, 28.0))
        location = f"{_side_name(side)} sylvian fissure"
    elif site == "interhemispheric fissure":
        c = ras_to_lps((0.0, float(rng.uniform(-30, 40)), 30.0))
        rad = float(rng.uniform(18.0, 30.0))
        location = "interhemispheric fissure"
    else:
        c = _surface_point(an, rng, lambda xr, yr, zr: (xr * side > 20) & (zr > 0))
        if c is None:
            return None
        rad = float(rng.uniform(20.0, 35.0))
        location = f"{_side_name(side)} {_lobe(c)} convexity sulci"
    sl, (z, y, x) = _crop(an, c, rad * 1.3 + 3 * h)
    d = np.sqrt((x - F32(c[0])) ** 2 + (y - F32(c[1])) ** 2 + (z - F32(c[2])) ** 2) - F32(rad)
    d = d + smooth_field(rng, d.shape, [max(4, n // 8 + 3) for n in d.shape], 0.25 * rad)
    region = ramp(d, h) * (an.depth[sl] > -0.5)
    csf = np.clip(an.cav[sl] - an.gm[sl] - an.wm[sl] - an.vent[sl], 0.0, 1.0)
    mix = float(rng.uniform(0.75, 1.0))
    frac = (region * csf * F32(mix)).astype(F32)
    return Lesion(HEMORRHAGE, "subarachnoid", location, sl, frac, np.asarray(c, float),
                  params={"site": site, "blood_fraction_of_csf": round(mix, 3), "radius_mm": round(rad, 1)},
                  hu=_blood_hu(rng))


_CONTUSION_SITES = {"frontal pole": (20.0, 62.0, -2.0), "orbitofrontal": (18.0, 38.0, -20.0),
                    "temporal pole": (40.0, 14.0, -34.0), "inferior temporal": (50.0, -10.0, -30.0)}


def contusions(an: Anatomy, rng, head: Head, n: int | None = None) -> list[Lesion]:
    n = n or int(rng.integers(1, 5))
    out = []
    for _ in range(n):
        site = str(rng.choice(list(_CONTUSION_SITES)))
        side = float(rng.choice([-1.0, 1.0]))
        xr, yr, zr = _CONTUSION_SITES[site]
        c0 = ras_to_lps((side * xr, yr, zr))
        sl, _ = _crop(an, c0, 16.0)
        ok = (an.gm[sl] + an.wm[sl] > 0.5) & (an.depth[sl] > 2.0) & (an.depth[sl] < 7.0)
        c = _random_point(an, rng, ok, sl)
        if c is None:
            continue
        les = _haematoma(an, rng, c, loguniform(rng, 0.2, 6.0), "contusion", f"{_side_name(side)} {site}")
        les.params["mottled"] = True
        out.append(les)
    return out


# --- HU of the lesions -----------------------------------------------------------------------------

def apply_hu(les: Lesion, an: Anatomy, head: Head, rng) -> None:
    """Change the HU of an.hu in the lesion's crop (after the anatomy is composed)."""
    hu = an.hu[les.sl]
    if les.cls == INFARCT:
        d_g, d_w = les.params["drop_gm_hu"], les.params["drop_wm_hu"]
        hu -= les.region * (an.gm[les.sl] * F32(d_g) + an.wm[les.sl] * F32(d_w))
        return
    if les.rim is not None:
        hu -= les.rim * F32(les.params["oedema_hu"])
    value = np.full(les.frac.shape, les.hu, F32)
    if les.kind in ("lobar", "deep", "contusion", "subdural", "epidural"):
        tex = smooth_field(rng, les.frac.shape, [max(4, n // 5 + 3) for n in les.frac.shape], 1.0)
        value += F32(3.0 if les.kind != "contusion" else 8.0) * tex
    if les.kind in ("intraventricular", "subarachnoid"):
        hu += les.frac * (value - F32(head.hu["csf"]))  # blood replaces (part of) the CSF
    else:
        hu += les.frac * (value - hu)
