"""One head of family B on the atlas grid: tissue fractions from the template, skull, scalp, skull base, HU.

Per case: tissue HU, atrophy (parenchyma eroded where it is thin, so sulci and ventricles widen), the
width of the subarachnoid space, a skull shell of varying thickness (4-10 mm, inner and outer tables
around a diploe, thicker and denser at the skull base, a foramen magnum around the cord), the scalp
(skin, subcutaneous fat, temporalis), a crude face and skull base outside the cranium (orbits with
globes, ethmoid/sphenoid/maxillary air, nasal cavity, petrous bones, mastoid air cells, neck muscles),
venous sinuses, the falx and calcifications (the unlabelled mimics).
Inside the cavity everything is the atlas: grey and white matter from the ICBM152 probability maps,
CSF where the cavity is not parenchyma.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdpm_cli.synth.atlas._util import F32, band, capsule_sd, ellipsoid_sd, paint, ramp, smooth_field
from sdpm_cli.synth.atlas.template import Template, ras_to_lps

HEAD_CENTRE = (0.0, 18.0, 8.0)  # LPS mm: centre of the brain (pose and scale pivot)

# tissue classes of the optional tissue map (cfg.with_tissue), before lesions
TISSUE_CLASSES = {0: "air", 1: "soft tissue", 2: "fat", 3: "bone", 4: "csf", 5: "ventricle", 6: "grey matter",
                  7: "white matter", 8: "venous sinus", 9: "falx", 10: "calcification", 11: "globe"}


@dataclass
class Head:
    """Random per-case anatomy of family B (mm, HU)."""

    hu: dict
    atrophy_cortical: float
    atrophy_central: float
    delta_mm: float           # subarachnoid space added outside the template's brain mask
    skull_t0: float
    skull_coef: np.ndarray
    temporal_thin: float
    base_extra: float
    scalp_t: float
    scalp_fat: float
    deform_sigma: float
    flags: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"atrophy_cortical": round(self.atrophy_cortical, 3), "atrophy_central": round(self.atrophy_central, 3),
                "subarachnoid_mm": round(self.delta_mm, 2), "skull_mm": round(self.skull_t0, 2),
                "scalp_mm": round(self.scalp_t, 2), "deformation_sigma_mm": round(self.deform_sigma, 2),
                "hu": {k: round(float(v), 1) for k, v in self.hu.items()}, "flags": dict(self.flags)}


def draw_head(rng: np.random.Generator) -> Head:
    wm = float(rng.uniform(20.0, 35.0))
    cort = float(rng.uniform(700.0, 1900.0))
    hu = {
        "wm": wm,
        "gm": wm + float(rng.uniform(0.0, 12.0)),
        "csf": float(rng.uniform(0.0, 15.0)),
        "vessel": float(rng.uniform(40.0, 70.0)),
        "falx": float(rng.uniform(50.0, 100.0)),
        "cortical": cort,
        "diploe": cort * float(rng.uniform(0.3, 0.6)),
        "dense_bone": min(2000.0, cort * float(rng.uniform(1.05, 1.3))),
        "scalp": float(rng.uniform(20.0, 60.0)),
        "fat": float(rng.uniform(-100.0, -60.0)),
        "muscle": float(rng.uniform(40.0, 60.0)),
        "globe": float(rng.uniform(3.0, 15.0)),
        "lens": float(rng.uniform(80.0, 120.0)),
        "sinus_air": float(rng.uniform(-1000.0, -900.0)),
        "calcification": float(rng.uniform(100.0, 600.0)),
    }
    ac = float(rng.beta(1.5, 3.0))
    return Head(
        hu=hu,
        atrophy_cortical=ac,
        atrophy_central=float(np.clip(ac + rng.normal(0.0, 0.15), 0.0, 1.0)),
        delta_mm=float(rng.uniform(0.6, 1.8)),
        skull_t0=float(rng.uniform(5.0, 8.0)),
        skull_coef=rng.normal(0.0, 0.7, 8),
        temporal_thin=float(rng.uniform(1.0, 3.0)),
        base_extra=float(rng.uniform(2.0, 5.0)),
        scalp_t=float(rng.uniform(3.5, 7.5)),
        scalp_fat=float(rng.uniform(0.2, 0.6)),
        deform_sigma=float(rng.uniform(1.5, 4.0)),
        flags={
            "pineal_calc": bool(rng.random() < 0.6),
            "choroid_calc": bool(rng.random() < 0.5),
            "basal_ganglia_calc": bool(rng.random() < 0.15),
            "falx_calc": bool(rng.random() < 0.1),
            "mastoid_air": bool(rng.random() < 0.85),
        },
    )


@dataclass
class Anatomy:
    """Per-case fractions on the template grid (float32, writable copies)."""

    tpl: Template
    gm: np.ndarray
    wm: np.ndarray
    cav: np.ndarray     # intracranial cavity fraction
    vent: np.ndarray    # ventricular CSF fraction
    depth: np.ndarray   # mm below the cavity surface (negative outside)
    hu: np.ndarray | None = None
    tissue: np.ndarray | None = None

    def csf(self, sl=None) -> np.ndarray:
        s = sl if sl is not None else (slice(None),) * 3
        return np.clip(self.cav[s] - self.gm[s] - self.wm[s], 0.0, 1.0)


def build_fractions(tpl: Template, head: Head) -> Anatomy:
    """Grey/white matter, cavity and ventricles of this head (atrophy applied)."""
    h = tpl.h
    depth = (F32(head.delta_mm) - tpl.sd).astype(F32)
    cav = ramp(-depth, h)
    # atrophy: erode parenchyma where its smoothed fraction is low (sulci, cortex, ventricle walls);
    # cortical atrophy acts within ~2 cm of the surface, central atrophy around the ventricles
    w_surf = np.clip((F32(30.0) - depth) / F32(20.0), 0.0, 1.0)
    theta = F32(0.5) * (F32(head.atrophy_cortical) * w_surf + F32(head.atrophy_central) * (1 - w_surf))
    theta += F32(0.35 * head.atrophy_central) * tpl.vent_near
    keep = np.clip((tpl.par_smooth - theta + F32(0.15)) / F32(0.15), 0.0, 1.0)
    gm = (tpl.gm * keep).astype(F32)
    wm = (tpl.wm * keep).astype(F32)
    par0 = tpl.gm + tpl.wm
    eroded = par0 * (1 - keep)
    vent = np.minimum(tpl.vent + eroded * tpl.vent_near, np.clip(cav - gm - wm, 0, 1)).astype(F32)
    return Anatomy(tpl=tpl, gm=gm, wm=wm, cav=cav, vent=vent, depth=depth)


def _dirs(tpl: Template, sl=None):
    z, y, x = tpl.zyx(sl)
    dx, dy, dz = x - F32(HEAD_CENTRE[0]), y - F32(HEAD_CENTRE[1]), z - F32(HEAD_CENTRE[2])
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + F32(1e-3)
    return dx / r, dy / r, dz / r, z, y, x


def skull_thickness(tpl: Template, head: Head) -> np.ndarray:
    """Calvarial thickness (mm) per voxel: smooth over directions from the head centre, 4-10 mm,
    thinner over the temporal squama, thicker at the skull base."""
    ux, uy, uz, z, _, _ = _dirs(tpl)
    c = head.skull_coef.astype(F32)
    t = (F32(head.skull_t0) + c[0] * ux + c[1] * uy + c[2] * uz + c[3] * ux * uy + c[4] * ux * uz
         + c[5] * uy * uz + c[6] * (ux * ux - uy * uy) + c[7] * (F32(3) * uz * uz - 1) * F32(0.5))
    t -= F32(head.temporal_thin) * np.clip(np.abs(ux) * F32(1.6) - F32(0.9), 0, 1) * np.clip(1 - np.abs(uz) * 2.5, 0, 1)
    t = np.clip(t, 4.0, 10.0)
    t += F32(head.base_extra) * np.clip((F32(-22.0) - z) / F32(25.0), 0.0, 1.0)
    return t.astype(F32)


def falx_edge(y_ras: np.ndarray) -> np.ndarray:
    """MNI z (mm) of the falx's free edge along y: above the corpus callosum, lower at both ends."""
    return np.interp(y_ras, [-110, -60, -40, 30, 60, 80], [-5, 5, 32, 32, 0, -20]).astype(F32)


def _ras_box(tpl: Template, lo_ras, hi_ras):
    a, b = ras_to_lps(lo_ras), ras_to_lps(hi_ras)
    return tpl.box(np.minimum(a, b), np.maximum(a, b))


def compose_hu(an: Anatomy, head: Head, rng: np.random.Generator, with_tissue: bool = False) -> list[dict]:
    """Fill an.hu (float32 HU on the template grid); returns the mimics drawn (canonical LPS centres)."""
    tpl, h, H = an.tpl, an.tpl.h, head.hu
    u_out = -an.depth                       # mm outside the cavity surface
    T = skull_thickness(tpl, head)
    z, y, x = tpl.zyx()
    scalp_t = head.scalp_t + smooth_field(rng, tpl.shape, (5, 6, 5), 0.8)
    # temporalis: a muscle layer over the temporal squama
    ux, uy, uz, _, _, _ = _dirs(tpl)
    temporalis = (F32(rng.uniform(4.0, 9.0)) * np.clip(np.abs(ux) * 2.2 - 1.4, 0, 1)
                  * np.clip(1 - np.abs(uz + 0.1) * 2.2, 0, 1))
    del ux, uy, uz
    outer = T + np.maximum(scalp_t, 2.5) + temporalis
    hu = np.full(tpl.shape, -1000.0, F32)
    tissue = np.zeros(tpl.shape, np.uint8) if with_tissue else None

    def put(sl, frac, value, cls=None):
        paint(hu, sl, frac, value)
        if tissue is not None and cls is not None:
            sub = tissue[sl]
            sub[frac >= 0.5] = cls

    every = (slice(None),) * 3
    put(every, ramp(u_out - outer, h), H["scalp"], 1)
    put(every, band(u_out, T + 1.0, outer - 1.5 - temporalis, h) * F32(head.scalp_fat), H["fat"])
    put(every, band(u_out, T + 0.5, T + temporalis, h), H["muscle"])
    del scalp_t, temporalis, outer

    # neck and face below the cranium (crude analytic scaffold: the atlas has no head outside the brain)
    sl = _ras_box(tpl, (-70, -95, -104), (70, 40, -35))
    zz, yy, xx = tpl.zyx(sl)
    neck = ramp(ellipsoid_sd(zz, -yy, -xx, (0, -25, -104), (60, 58, 62)), h) * ramp(zz + 40.0, h)
    put(sl, neck * (u_out[sl] > 0), H["muscle"], 1)
    sl = _ras_box(tpl, (-70, -10, -104), (70, 100, -8))
    zz, yy, xx = tpl.zyx(sl)
    xr, yr = -xx, -yy
    face = ramp(ellipsoid_sd(zz, yr, xr, (0, 40, -60), (64, 58, 52)), h) * ramp(zz + 12.0, h) * (u_out[sl] > 0)
    put(sl, face, 0.7 * H["muscle"] + 0.3 * H["scalp"], 1)
    put(sl, face * ramp(ellipsoid_sd(zz, yr, xr, (0, 42, -60), (52, 46, 44)), h) * F32(0.35), H["fat"], 2)

    # the bone shell (outer/inner tables, diploe), thicker and denser at the skull base
    bone = band(u_out, 0.0, T, h)
    t_in, t_out = F32(rng.uniform(1.2, 2.2)), F32(rng.uniform(1.2, 2.2))
    dipl = band(u_out, t_in, T - t_out, h)
    base = np.clip((F32(-25.0) - z) / F32(20.0), 0.0, 1.0)
    cort_hu = F32(H["cortical"]) + (F32(H["dense_bone"]) - F32(H["cortical"])) * base
    # the foramen magnum: no bone around the cord below the posterior fossa
    cord_r = np.sqrt(x * x + (y - F32(40.0)) ** 2)
    hole = ramp(cord_r - 16.0, h) * ramp(z + 54.0, h)
    bone *= 1 - hole
    put(every, hole * (u_out > 0) * ramp(u_out - 14.0, h), 35.0, 1)
    put(every, bone, cort_hu, 3)
    put(every, bone * dipl * (1 - base), H["diploe"])
    del dipl, base, cort_hu, cord_r, hole, bone

    # petrous bones and mastoids
    for s in (1.0, -1.0):
        sl = _ras_box(tpl, (s * 8, -55, -60), (s * 70, 0, -10))
        zz, yy, xx = tpl.zyx(sl)
        pet = ramp(capsule_sd(zz, -yy, -xx, (s * 22, -18, -38), (s * 52, -32, -32), 8.0), h) * (u_out[sl] > 0.3)
        put(sl, pet, H["dense_bone"], 3)
        if head.flags["mastoid_air"]:
            mast = ramp(ellipsoid_sd(zz, -yy, -xx, (s * 52, -40, -42), (9, 11, 12)), h) * (u_out[sl] > 1.0)
            cells = np.clip(smooth_field(rng, mast.shape, [max(4, n // 3) for n in mast.shape], 1.0), -1, 1)
            put(sl, mast, F32(-700.0) + F32(500.0) * np.abs(cells), 0)

    # orbits: fat cone with a bony wall, globe, lens, optic nerve
    for s in (1.0, -1.0):
        sl = _ras_box(tpl, (s * 8, 10, -62), (s * 60, 90, -12))
        zz, yy, xx = tpl.zyx(sl)
        yr, xr = -yy, -xx
        out = u_out[sl] > 0.5
        orb_sd = ellipsoid_sd(zz, yr, xr, (s * 32, 54, -38), (16, 22, 15))
        put(sl, ramp(orb_sd - 1.5, h) * out, H["cortical"] * 0.5, 3)
        put(sl, ramp(orb_sd, h) * out, H["fat"], 2)
        put(sl, ramp(capsule_sd(zz, yr, xr, (s * 16, 20, -34), (s * 30, 52, -38), 2.5), h) * out, 30.0, 1)
        put(sl, ramp(ellipsoid_sd(zz, yr, xr, (s * 32, 62, -38), (12, 12, 12)), h) * out, H["globe"], 11)
        put(sl, ramp(ellipsoid_sd(zz, yr, xr, (s * 32, 73, -38), (4.5, 2.0, 4.5)), h) * out, H["lens"], 1)

    # air: ethmoid cells, nasal cavity, sphenoid and maxillary sinuses (with a bony lining by the cavity)
    sl = _ras_box(tpl, (-45, -10, -104), (45, 95, -10))
    zz, yy, xx = tpl.zyx(sl)
    yr, xr = -yy, -xx
    lining = (u_out[sl] > 1.5).astype(F32)
    septa = np.clip(np.abs(smooth_field(rng, zz.shape[:1] + yy.shape[1:2] + xx.shape[2:], (14, 16, 14), 1.0)), 0, 1)
    eth = ramp(ellipsoid_sd(zz, yr, xr, (0, 42, -34), (12, 22, 11)), h) * lining
    put(sl, eth, F32(-850.0) + F32(600.0) * septa, 0)
    nasal = ramp(ellipsoid_sd(zz, yr, xr, (0, 50, -70), (13, 28, 26)), h) * lining
    put(sl, nasal, H["sinus_air"], 0)
    put(sl, nasal * ramp(np.abs(xr) - 1.0, h), 250.0, 3)  # nasal septum
    sph = ramp(ellipsoid_sd(zz, yr, xr, (0, 10, -38), (14, 11, 9)), h) * lining
    put(sl, sph, H["sinus_air"], 0)
    for s in (1.0, -1.0):
        mx = ramp(ellipsoid_sd(zz, yr, xr, (s * 30, 48, -72), (16, 20, 17)), h) * lining
        put(sl, ramp(ellipsoid_sd(zz, yr, xr, (s * 30, 48, -72), (18, 22, 19)), h) * lining, H["cortical"] * 0.6, 3)
        put(sl, mx, H["sinus_air"], 0)
    del septa, lining

    # inside the cavity: the atlas
    tex = smooth_field(rng, tpl.shape, (14, 16, 14), 1.2)
    csf = np.clip(an.cav - an.gm - an.wm, 0.0, 1.0)
    inside = an.gm * (F32(H["gm"]) + tex) + an.wm * (F32(H["wm"]) + tex) + csf * F32(H["csf"])
    hu *= 1 - an.cav
    hu += inside
    del inside, tex
    if tissue is not None:
        cavm = an.cav >= 0.5
        cls = np.where(an.wm >= an.gm, 7, 6).astype(np.uint8)
        cls[csf > np.maximum(an.gm, an.wm)] = 4
        cls[(an.vent >= 0.5 * np.maximum(csf, 1e-6)) & (csf > np.maximum(an.gm, an.wm))] = 5
        tissue[cavm] = cls[cavm]
        del cls, cavm

    depth = an.depth
    # superior sagittal sinus: a triangle in the midline under the vertex; transverse sinuses
    sss = (ramp(np.abs(x) - 4.5 * np.clip(1 - depth / 7.0, 0, 1), h) * band(depth, 0.0, 7.0, h)
           * ramp(-(z + 5.0), h))
    xr, yr = -x, -y
    z_ts = F32(-2.0) - F32(0.25) * np.abs(xr)
    ts = (ramp(np.abs(z - z_ts) - 4.0 * np.clip(1 - depth / 8.0, 0, 1), h) * band(depth, 0.0, 8.0, h)
          * ramp(yr + 55.0, h) * ramp(np.abs(xr) - 60.0, h))
    sinus = np.maximum(sss, ts) * an.cav
    del sss, ts
    put(every, sinus, H["vessel"], 8)
    del sinus
    mimics: list[dict] = [{"kind": "venous_sinus", "site": "superior sagittal and transverse sinuses",
                           "hu": round(H["vessel"], 1), "dense": bool(H["vessel"] >= 60.0)}]
    # falx: a thin midline sheet above its free edge (over the corpus callosum)
    z_edge = falx_edge(yr[0, :, 0])[None, :, None]
    falx = ramp(np.abs(x) - 0.7, h) * ramp(z_edge - z, h) * csf * (depth > 2.0)
    put(every, falx, H["falx"], 9)
    del falx, csf
    mimics.append({"kind": "falx", "hu": round(H["falx"], 1)})

    calcs = []
    if head.flags["pineal_calc"]:
        calcs.append(("pineal", (0.0, -33.0, 2.0), float(rng.uniform(2.0, 4.0)), False))
    if head.flags["choroid_calc"]:
        r = float(rng.uniform(2.5, 4.5))
        calcs += [("choroid plexus (glomus)", (s * 28.0, -38.0, 15.0), r, True) for s in (1.0, -1.0)]
    if head.flags["basal_ganglia_calc"]:
        r = float(rng.uniform(1.5, 3.0))
        calcs += [("basal ganglia (globus pallidus)", (s * 19.0, -3.0, 0.0), r, False) for s in (1.0, -1.0)]
    if head.flags["falx_calc"]:
        calcs.append(("falx", (0.0, float(rng.uniform(-20, 30)), float(rng.uniform(40, 60))), 3.0, False))
    for site, c_ras, r, in_vent in calcs:
        c = ras_to_lps(c_ras)
        if in_vent:  # snap into the nearest ventricle voxel
            sl = tpl.box(c - 12, c + 12)
            vz, vy, vx = np.nonzero(an.vent[sl] > 0.5)
            if vz.size:
                zz, yy, xx = tpl.zyx(sl)
                pts = np.stack([xx[0, 0, vx], yy[0, vy, 0], zz[vz, 0, 0]], 1)
                c = pts[int(np.argmin(((pts - c) ** 2).sum(1)))]
        sl = tpl.box(c - r - 2 * h, c + r + 2 * h)
        zz, yy, xx = tpl.zyx(sl)
        f = ramp(np.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) - r, h)
        hu_c = float(np.clip(H["calcification"] * rng.uniform(0.7, 1.3), 100.0, 600.0))
        put(sl, f, hu_c, 10)
        mimics.append({"kind": "calcification", "site": site, "hu": round(hu_c, 1), "radius_mm": round(r, 2),
                       "centre_lps": [round(float(v), 2) for v in c]})
    an.hu = hu
    an.tissue = tissue
    return mimics
