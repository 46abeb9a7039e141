"""Analytic head anatomy in Hounsfield units on a canonical (head-aligned) grid.

The head frame has its origin near the foramen of Monro, x to the patient's left, y posterior and z
superior (LPS). Shells (scalp, skull, subarachnoid CSF, cortex) are built from radial distances to a
randomly deformed ellipsoidal envelope; the skull base is a height field with anterior, middle and
posterior fossae, petrous ridges, clivus and foramen magnum; deep structures are rotated ellipsoids.
Sulci are the zero sheets of a random-wave field defined on the direction from the head centre, so
they run perpendicular to the brain surface like real sulci. The head's pose (rotation, position) is
applied later by the scanner when it samples this grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdpm_cli.synth.config import HeadParams
from sdpm_cli.synth.fields import (
    F32,
    Grid,
    coarse_noise,
    ellipsoid,
    eval_waves,
    paste_max,
    paste_min,
    bump,
    random_waves,
    rot_matrix,
    sig,
    soft_in,
    upsample2,
)

TISSUE_CLASSES: dict[int, str] = {
    0: "air", 1: "csf", 2: "cortex", 3: "white_matter", 4: "bone", 5: "soft_tissue",
    6: "other_brain", 7: "deep_grey", 8: "ventricle",
}
BIG = F32(1e3)


@dataclass
class Anatomy:
    """The head before lesions: HU plus the fields the lesion models need."""

    grid: Grid
    params: HeadParams
    hu: np.ndarray          # float32 HU
    cav: np.ndarray         # fraction inside the cranial cavity
    paren: np.ndarray       # fraction of brain parenchyma (cavity minus CSF, vessels)
    gm: np.ndarray          # grey-matter fraction of the parenchyma (cortex + deep nuclei)
    csf_surface: np.ndarray  # subarachnoid + sulcal CSF fraction (effaced by swollen infarcts)
    vent: np.ndarray        # ventricular CSF fraction
    depth: np.ndarray       # mm below the brain surface (negative in the subarachnoid space)
    cerebrum: np.ndarray    # weight of the supratentorial compartment
    table_depth: np.ndarray | None = None  # mm below the inner table / cranial floor (> 0 inside the cavity)
    cisterns: np.ndarray | None = None     # fissure, Sylvian and basal-cistern CSF fraction (subarachnoid blood)
    sulci: np.ndarray | None = None        # sulcal + convexity subarachnoid CSF fraction
    centres: dict = field(default_factory=dict)  # named landmarks (mm) for lesion placement
    tissue: np.ndarray | None = None

    def x_mid(self, y):
        """x of the mid-sagittal plane at height/depth y (mm)."""
        return self.params.midline_bend * np.sin(np.pi * np.asarray(y, F32) / 160.0)


def canonical_grid(p: HeadParams, h: float) -> Grid:
    s = p.scale
    hx = p.a * 1.06 + 24.0
    lo = (-hx, -(p.b_ant * 1.05 + 20.0), -80.0 * s)
    hi = (hx, p.b_post * 1.05 + 22.0, p.c_up * 1.05 + 18.0)
    shape = tuple(int(np.ceil((hi[i] - lo[i]) / h)) + 1 for i in (2, 1, 0))
    return Grid(origin=tuple(float(v) for v in lo), h=float(h), shape=shape)  # type: ignore[arg-type]


def _floor(p: HeadParams, y2, x2):
    """Height field of the cranial floor F(x, y), base-bone thickness and compartment weights (2D)."""
    s = p.scale
    X, Y = x2 / s, y2 / s
    xa = np.abs(X)
    y_pet = -6.0 + 0.55 * (xa - 12.0)  # petrous ridge line, posterolateral to anteromedial
    w_post = sig((Y - np.maximum(y_pet, -6.0)) / 2.5)
    w_ant = sig((-22.0 + 0.12 * xa - Y) / 2.5)
    f_ant = -20.0 + 5.0 * bump(((xa - 26.0) / 13.0)) - 4.0 * bump((xa / 6.0))
    f_mid = -44.0 + 3.0 * (xa / 60.0) ** 2
    sella = -24.0 - 6.0 * bump(np.sqrt((X / 7.0) ** 2 + ((Y + 9.0) / 5.0) ** 2))
    f_mid = f_mid + (sella - f_mid) * sig((14.0 - xa) / 2.5)
    bowl = -66.0 + 26.0 * ((X / 56.0) ** 2 + ((Y - 40.0) / 42.0) ** 2)
    clivus = -22.0 - (Y + 6.0) * (40.0 / 24.0)
    f_post = np.maximum(bowl, bowl + (clivus - bowl) * sig((16.0 - xa) / 3.0) * (clivus > bowl))
    f = w_ant * f_ant + (1 - w_ant) * ((1 - w_post) * f_mid + w_post * f_post)
    ridge = bump(((Y - y_pet) / 4.5)) * sig((xa - 13.0) / 2.0) * sig((58.0 - xa) / 3.0)
    z_ridge = -27.0 - 0.12 * (xa - 12.0)
    f = f + ridge * np.maximum(0.0, z_ridge - f)
    fm = bump(((X / 13.0) ** 2 + ((Y - 17.0) / 16.0) ** 2))
    f = f - 45.0 * fm
    t_base = 6.0 + 18.0 * ridge - 3.0 * w_ant * (1 - w_post) + 8.0 * bump(np.sqrt((X / 10.0) ** 2 + ((Y + 12.0) / 9.0) ** 2))
    t_base = t_base * (1 - fm)
    return (f * s).astype(F32), (t_base * s).astype(F32), w_post.astype(F32), ridge.astype(F32)


def build_anatomy(p: HeadParams, h: float, rng: np.random.Generator, with_tissue: bool = False) -> Anatomy:
    """Head model on a grid of spacing h (mm); all random choices come from rng."""
    g = canonical_grid(p, h)
    s, a = p.scale, p.atrophy
    H = p.hu
    z, y, x = g.zyx()
    shape = g.shape

    # --- directions and the deformed envelope (inner table) ---
    r = np.sqrt(x * x + y * y + z * z, dtype=F32)
    np.maximum(r, F32(1e-3), out=r)
    ux, uy, uz = x / r, y / r, z / r
    bb = F32(p.b_ant) + F32(p.b_post - p.b_ant) * sig(10 * uy)
    cc = F32(p.c_down) + F32(p.c_up - p.c_down) * sig(10 * uz)
    aa = F32(p.a) * (1 + F32(p.egg) * uy)
    r_in = 1.0 / np.sqrt((ux / aa) ** 2 + (uy / bb) ** 2 + (uz / cc) ** 2)
    del bb, cc, aa
    k = p.shape_coef.astype(F32)
    r_in *= 1 + (k[0] * ux * ux + k[1] * uy * uy + k[2] * uz * uz + k[3] * ux * uy + k[4] * uy * uz
                 + k[5] * ux * uz + k[6] * ux + k[7] * uy + k[8] * uz)
    axa = np.abs(ux)
    temporal = bump(((axa - 0.92) / 0.14)) * bump((uz / 0.4))
    sc = p.skull_coef.astype(F32)
    t_sk = F32(p.skull_t) * (1 + 0.22 * np.abs(uy) + 0.12 * np.maximum(uz, 0)) - 2.8 * temporal
    t_sk += 0.5 * (sc[0] * ux + sc[1] * uy + sc[2] * uz + sc[3] * ux * uy + sc[4] * uy * uz + sc[5] * uz * uz)
    t_sk = np.maximum(t_sk, F32(2.2))
    r_out = r_in + t_sk
    t_scalp = (F32(p.scalp_t) + 4.0 * sig((uy - 0.3) / 0.12) * sig((-uz - 0.15) / 0.12)
               + 7.0 * bump(((axa - 0.95) / 0.12)) * bump(((uz + 0.05) / 0.3)) * sig((0.35 - uy) / 0.1))
    temporalis = bump(((axa - 0.95) / 0.12)) * bump(((uz + 0.05) / 0.3)) * sig((0.35 - uy) / 0.1)
    r_skin = r_out + t_scalp
    del ux, uy, uz, axa, temporal

    # --- skull base height field ---
    y2, x2 = y[0], x[0]  # [ny,1], [1,nx]
    F, t_base, w_post2, ridge2 = _floor(p, y2, x2)
    Fz = F[None]
    d_in = r - r_in
    d_cav = np.maximum(d_in, Fz - z)
    cav = soft_in(d_cav, h)
    f_outer = soft_in(r - r_out, h)
    f_head = soft_in(r - r_skin, h)
    f_abb = soft_in((Fz - t_base[None]) - z, h)   # above the bottom of the base bone
    bone = np.clip(f_outer * f_abb - cav, 0, 1)
    extra = f_outer * (1 - f_abb)
    scalp = np.clip(f_head - f_outer, 0, 1)

    # --- bone HU: tables and diploe in the vault, denser petrous bone, porous base ---
    di, do = d_in, r_out - r
    tab = np.clip(0.28 * t_sk, 1.2, 2.6)
    diploe = soft_in(tab - di, h) * soft_in(tab - do, h) * soft_in(-(z - Fz - 2.0), h)
    tex = coarse_noise(rng, shape, 3.0 / h)
    hu_bone = F32(H["cortical"]) + diploe * (F32(H["diploe"]) - F32(H["cortical"]) + 120 * tex)
    below = soft_in(z - Fz, h)  # below the floor: skull base
    hu_base = F32(0.8 * H["cortical"]) + 120 * tex
    pet = ridge2[None] * below
    hu_base = hu_base + pet * (F32(H["dense_bone"]) - hu_base)
    hu_bone = hu_bone + below * (hu_base - hu_bone)
    del tab, hu_base, pet

    # --- scalp: galea/muscle, subcutaneous fat, skin ---
    ds = r - r_out
    mus_t = 1.0 + 8.0 * temporalis
    fat_band = soft_in(mus_t - ds, h) * soft_in(ds - (t_scalp - 1.5), h)
    hu_scalp = F32(H["soft"]) + (F32(H["muscle"]) - F32(H["soft"])) * soft_in(ds - mus_t, h)
    hu_scalp = hu_scalp + fat_band * (F32(H["fat"]) - hu_scalp)
    del ds, fat_band, temporalis, t_scalp

    # --- extracranial tissue under the skull base: muscle/fat mixture ---
    fm = np.clip(0.35 + 0.45 * coarse_noise(rng, shape, 6.0 / h), 0, 1)
    hu_extra = F32(H["muscle"]) + fm * (F32(H["fat"]) - F32(H["muscle"]))
    del fm

    # ===================== brain =====================
    D_s = -d_cav                       # depth below the inner table / floor
    w_sas = F32(0.6 + 2.0 * a)
    D = D_s - w_sas                    # depth below the brain surface
    csf_sas = soft_in(D, h)
    xm = (p.midline_bend * np.sin(np.pi * y / 160.0)).astype(F32)
    dx = np.abs(x - xm)
    # posterior fossa (below the tentorium, behind the petrous ridges)
    z_t = s * (-4.0 - 0.45 * (y2 / s - 18.0) - 10.0 * (x2 / (55.0 * s)) ** 2)
    pf = w_post2[None] * soft_in(z - z_t[None], h)
    cerebrum = cav * (1 - pf)
    # interhemispheric fissure (absent under the corpus callosum and in the posterior fossa)
    ccm = sig((24.0 * s - z) / 2.0) * sig((32.0 * s - np.abs(y - 2.0 * s)) / 3.0)
    fis_pres = (1 - ccm) * (1 - pf)
    w_f = F32(0.7 + 1.5 * a)
    d_fis = dx - w_f + (1 - fis_pres) * BIG
    fis = soft_in(d_fis, h)
    # Sylvian fissures: horizontal cleft + vertical cistern lateral to the insula
    xa = np.abs(x)
    x_ins = F32(35.0 * s)
    z_syl = (-6.0 + 0.22 * y / s) * s
    w_syl = F32(0.9 + 1.6 * a)
    pres_h = sig((xa - x_ins + 1.0) / 1.5) * sig((22.0 * s - y) / 4.0) * sig((y + 32.0 * s) / 4.0) * (1 - pf)
    d_h = np.abs(z - z_syl) - w_syl + (1 - pres_h) * BIG
    pres_v = (sig((z - (z_syl - 15.0 * s)) / 3.0) * sig((z_syl + 12.0 * s - z) / 3.0)
              * sig((14.0 * s - y) / 4.0) * sig((y + 26.0 * s) / 4.0))
    d_v = np.abs(xa - x_ins) - w_syl + (1 - pres_v) * BIG
    d_syl = np.minimum(d_h, d_v)
    syl = soft_in(d_syl, h)
    del pres_h, pres_v, d_h, d_v, z_syl, ccm

    # sulci: zero sheets of a random-wave field on the direction from the head centre (coarse grid)
    lam = float(rng.uniform(13.0, 17.0)) * s
    R_ref = 70.0 * s
    waves = random_waves(rng, 24, lam)
    waves2 = random_waves(rng, 8, 45.0 * s)
    zc, yc, xc = z[::2], y[:, ::2], x[:, :, ::2]
    rc = np.sqrt(xc * xc + yc * yc + zc * zc) + F32(1e-3)
    # a smooth 3D warp bends the sulci (otherwise they would be straight radial sheets)
    warp = [eval_waves(random_waves(rng, 6, 35.0 * s), xc, yc, zc) * F32(5.0 * s) for _ in range(3)]
    Gc = eval_waves(waves, xc / rc * R_ref + warp[0], yc / rc * R_ref + warp[1], zc / rc * R_ref + warp[2])
    del warp
    G2c = eval_waves(waves2, xc, yc, zc)
    kk = 2 * np.pi / lam * np.sqrt(2.0 / 3.0)
    sd_c = np.abs(Gc) / F32(kk) * (rc / F32(R_ref))
    sd = upsample2(sd_c, shape=shape)
    G2 = upsample2(G2c, shape=shape)
    del zc, yc, xc, rc, Gc, G2c, sd_c
    depth_s = np.clip(F32(13.0 * s) + 5.0 * G2, 6.0, 22.0)
    w_sulc = F32(0.5 + 1.4 * a) * (1 - 0.5 * np.clip(D / depth_s, 0, 1))
    d_sulc = sd - w_sulc + (1 - soft_in(D - depth_s, h)) * BIG + pf * BIG
    sulc = soft_in(d_sulc, h)
    del sd, w_sulc, depth_s

    # ventricles (sizes grow with atrophy)
    v = 1.0 + 0.9 * a
    vent = np.zeros(shape, F32)
    d_vent = np.full(shape, BIG, F32)
    cent = {}
    for side in (-1, 1):
        fh_x = side * (5.5 + 1.2 * v) * s
        body_x = side * (8.5 + 1.5 * v) * s
        parts = [
            ((fh_x, -20 * s, 12 * s), (4.2 * v * s, 13 * s, 6.5 * v * s), rot_matrix(-12, side * 14, 0)),
            ((body_x, 4 * s, 19 * s), (4.3 * v * s, 17 * s, 4.2 * v * s), rot_matrix(-6, side * 5, 0)),
            ((side * (14 + 2 * v) * s, 28 * s, 10 * s), (6.0 * v * s, 9 * s, 7.5 * v * s), None),
            ((side * (17 + 2 * v) * s, 44 * s, 8 * s), (3.0 * v * s, 11 * s, 3.5 * v * s), rot_matrix(0, -side * 12, 0)),
            ((side * 31 * s, 5 * s, -16 * s), (2.3 * v * s, 12 * s, 2.8 * v * s), rot_matrix(-22, side * 8, 0)),
        ]
        for c, rr, R in parts:
            sl, d = ellipsoid(g, c, rr, R, pad=8.0)
            paste_max(vent, sl, soft_in(d, h))
            paste_min(d_vent, sl, d)
        cent[f"atrium_{side}"] = np.array(parts[2][0])
    for c, rr in [((0, 2 * s, 0), (0.6 + 1.2 * v, 13 * s, 10 * s)), ((0, 30 * s, -40 * s), (5.5 * s, 3.5 * s, 7 * s))]:
        sl, d = ellipsoid(g, c, rr, None, pad=8.0)
        paste_max(vent, sl, soft_in(d, h))
        paste_min(d_vent, sl, d)
    cent["third_ventricle"] = np.array((0, 2 * s, 0))

    # deep grey nuclei
    deep = np.zeros(shape, F32)
    for side in (-1, 1):
        fh_x = abs((5.5 + 1.2 * v) * s) + 4.2 * v * s
        body_x = abs((8.5 + 1.5 * v) * s) + 4.3 * v * s
        nuclei = {
            "caudate": ((side * (fh_x + 3.5 * s), -16 * s, 11 * s), (4.5 * s, 10 * s, 8 * s), None),
            "caudate_body": ((side * (body_x + 2.5 * s), 6 * s, 20 * s), (3 * s, 14 * s, 3.5 * s), None),
            "lentiform": ((side * 22 * s, -3 * s, -1 * s), (6.5 * s, 15 * s, 9 * s), rot_matrix(0, side * 8, 0)),
            "thalamus": ((side * (0.6 + 1.2 * v + 8.5 * s), 12 * s, 3 * s), (8 * s, 14 * s, 8 * s), None),
        }
        for name, (c, rr, R) in nuclei.items():
            sl, d = ellipsoid(g, c, rr, R)
            paste_max(deep, sl, soft_in(d, h))
            cent[f"{name}_{side}"] = np.array(c, float)
            cent[f"{name}_{side}_r"] = np.array(rr, float)

    # brainstem and cisterns
    stem = np.zeros(shape, F32)
    d_stem = np.full(shape, BIG, F32)
    for c, rr in [((0, 8 * s, -12 * s), (11 * s, 9 * s, 8 * s)), ((0, 13 * s, -30 * s), (13 * s, 10.5 * s, 12 * s)),
                  ((0, 17 * s, -50 * s), (8 * s, 8 * s, 12 * s)), ((0, 18 * s, -75 * s), (5 * s, 5 * s, 18 * s))]:
        sl, d = ellipsoid(g, c, rr, None, pad=8.0)
        paste_max(stem, sl, soft_in(d, h))
        paste_min(d_stem, sl, d)
    stem *= cav
    w_c = F32(1.3 + 1.6 * a)
    # perimesencephalic cisterns ring the midbrain; lower down the CSF lies in front of the pons/medulla
    ring = np.maximum(sig((z + 20.0 * s) / 3.0), sig((14.0 * s - y) / 3.0))
    cist = soft_in(d_stem - w_c, h) * (1 - stem) * ring
    for c, rr in [((0, -8 * s, -14 * s), (11 * s, 7 * s, 4 * s)),
                  ((0, 58 * s, -52 * s), ((9 + 6 * a) * s, (9 + 6 * a) * s, (6 + 3 * a) * s))]:
        sl, d = ellipsoid(g, c, rr)
        paste_max(cist, sl, soft_in(d, h))
    cist *= cav

    # CSF fraction inside the cavity
    csf_surface = np.maximum(csf_sas, sulc)
    csf = np.maximum(csf_surface, fis)
    np.maximum(csf, syl, out=csf)
    np.maximum(csf, vent, out=csf)
    np.maximum(csf, cist, out=csf)

    # cortex: within t_c of the nearest CSF boundary (surface, sulci, fissures)
    t_c = F32(3.0 * s) * (1 + 0.12 * G2)
    dist_csf = np.minimum(np.minimum(D, d_sulc), np.minimum(d_fis, d_syl))
    cortex = soft_in(dist_csf - t_c, h) * (1 - pf)
    del dist_csf, d_sulc, t_c, G2
    gm_frac = np.maximum(cortex, deep)
    hu_t = F32(H["wm"]) + cortex * F32(H["gm"] - H["wm"])
    hu_t = hu_t + deep * (F32(H["deep_gm"]) - hu_t)
    if p.flags.get("wm_disease"):
        caps = soft_in(d_vent - 7.0 * s, h) * (1 - vent) * (1 - gm_frac)
        hu_t -= caps * F32(rng.uniform(2.0, 5.0))
        del caps
    # cerebellum: grey-dominated cortex with a white-matter core; brainstem in between
    core = np.zeros(shape, F32)
    for side in (-1, 1):
        sl, d = ellipsoid(g, (side * 20 * s, 42 * s, -40 * s), (10 * s, 13 * s, 8 * s))
        paste_max(core, sl, sig(-d / 3.0))
    hu_cb = F32(H["gm"] - 1.5) - core * F32(0.6 * (H["gm"] - H["wm"]))
    hu_t = hu_t + pf * (hu_cb - hu_t)
    hu_t = hu_t + stem * (F32(0.5 * (H["gm"] + H["wm"]) + 1.0) - hu_t)
    del core, hu_cb
    hu_cav = hu_t + csf * (F32(H["csf"]) - hu_t)
    paren = cav * (1 - csf)
    del hu_t

    # dura, venous sinuses, calcifications (blend over what is there)
    def blend(frac, value):
        nonlocal hu_cav
        hu_cav += frac * (F32(value) - hu_cav)
        paren[...] *= 1 - frac

    falx_frac = soft_in(dx - 0.45, h) * fis_pres
    blend(falx_frac, H["falx"])
    sss_w = 4.5 * s * np.clip(1 - D_s / (8.0 * s), 0, 1)
    sss = soft_in(np.maximum(dx - sss_w, D_s - 8.0 * s), h) * sig((z + 5 * s) / 3) * sig((y + 50 * s) / 3)
    blend(sss * cav, H["blood_vessel"])
    ts = (soft_in(np.maximum(np.abs(z - z_t[None]) - 3.0 * s, D_s - 7.0 * s), h)
          * sig((y - 25 * s) / 3) * sig((np.abs(x) - 8 * s) / 2))
    blend(ts * cav, H["blood_vessel"])
    tent = soft_in(np.abs(z - z_t[None]) - 0.5, h) * w_post2[None] * (1 - stem) * cav
    blend(0.6 * tent, H["falx"])
    del falx_frac, sss, ts, tent, sss_w
    calcs = []
    if p.flags.get("pineal_calc"):
        calcs.append(((0, 22 * s, 2 * s), (2.5, 2.5, 2.5)))
    if p.flags.get("choroid_calc"):
        for side in (-1, 1):
            c = cent[f"atrium_{side}"]
            calcs.append(((c[0], c[1] + 2, c[2] - 1), (2.5, 4.0, 2.5)))
    if p.flags.get("falx_calc"):
        calcs.append(((0, float(rng.uniform(-30, 20)) * s, 40 * s), (1.2, 7.0, 3.5)))
    if p.flags.get("basal_calc"):  # globus pallidus calcification (a bilateral, blood-like mimic)
        for side in (-1, 1):
            c = cent[f"lentiform_{side}"]
            calcs.append(((c[0] - side * 4 * s, c[1] + 1, c[2]), tuple(float(v) for v in rng.uniform(1.5, 3.5, 3))))
    for c, rr in calcs:
        sl, d = ellipsoid(g, c, rr)
        frac = np.zeros(shape, F32)
        frac[sl] = soft_in(d, h)
        blend(frac * cav, H["calcification"])
        del frac

    # ===================== compose =====================
    hu = F32(H["air"]) * (1 - f_head)
    hu += scalp * hu_scalp
    hu += bone * hu_bone
    hu += extra * hu_extra
    hu += cav * hu_cav
    del hu_scalp, hu_extra, hu_cav

    # extracranial structures: orbits, sinuses, mastoids, spine (never inside the cavity)
    out_cav = 1 - cav

    def over(sl, frac, value):
        w = frac * out_cav[sl]
        hu[sl] += w * (np.asarray(value, F32) - hu[sl])

    def cells(sl, lam_mm, wall_mm):
        """Air-cell honeycomb: 1 in the air, 0 on thin bony walls."""
        zz, yy, xx = g.zyx(sl)
        shp = np.broadcast_shapes(zz.shape, yy.shape, xx.shape)
        xx, yy, zz = (v + coarse_noise(rng, shp, 4.0 / h) * F32(0.35 * lam_mm) for v in (xx, yy, zz))
        ph = rng.uniform(0, np.pi, 3)
        dist = np.minimum(np.minimum(np.abs(np.sin(np.pi * xx / lam_mm + ph[0])),
                                     np.abs(np.sin(np.pi * yy / lam_mm + ph[1]))),
                          np.abs(np.sin(np.pi * zz / lam_mm + ph[2]))) * F32(lam_mm / np.pi)
        return soft_in(wall_mm - dist, h)

    bone_vals = F32(0.8 * H["cortical"])
    for side in (-1, 1):
        R = rot_matrix(0, side * 18, 0)
        oc = (side * 30 * s, -60 * s, -34 * s)
        sl, d = ellipsoid(g, oc, (15 * s, 20 * s, 13 * s), R)
        over(sl, soft_in(d - 1.8, h), bone_vals)          # orbital walls
        over(sl, soft_in(d, h), H["fat"])
        sl, d = ellipsoid(g, (side * 31 * s, -68 * s, -34 * s), (11.5 * s, 11.5 * s, 11.5 * s))
        over(sl, soft_in(d, h), H["globe"])
        sl, d = ellipsoid(g, (side * 31 * s, -79 * s, -34 * s), (4 * s, 1.8 * s, 4 * s))
        over(sl, soft_in(d, h), H["lens"])
        sl, d = ellipsoid(g, (side * 20 * s, -44 * s, -35 * s), (2.2 * s, 13 * s, 2.2 * s), rot_matrix(0, 0, side * 25))
        over(sl, soft_in(d, h), H["soft"])
        # maxillary sinus and mastoid air cells
        sl, d = ellipsoid(g, (side * 24 * s, -56 * s, -66 * s), (13 * s, 15 * s, 13 * s))
        over(sl, soft_in(d - 1.5, h), bone_vals)
        over(sl, soft_in(d, h), H["air"])
        sl, d = ellipsoid(g, (side * 47 * s, 22 * s, -47 * s), (9 * s, 11 * s, 11 * s))
        over(sl, soft_in(d, h) * cells(sl, 4.0, 0.5) * bone[sl], H["air"])
    # sphenoid sinus, ethmoid/nasal cavity (air cells with septa), nasal septum
    sl, d = ellipsoid(g, (0, -14 * s, -40 * s), (12 * s, 10 * s, 9 * s))
    over(sl, soft_in(d, h) * (1 - soft_in(np.abs(g.zyx(sl)[2]) - 0.8, h)), H["air"])
    sl, d = ellipsoid(g, (0, -58 * s, -44 * s), (10 * s, 22 * s, 22 * s))
    over(sl, soft_in(d - 1.0, h), bone_vals)
    over(sl, soft_in(d, h) * cells(sl, 6.0, 0.4) * (1 - soft_in(np.abs(g.zyx(sl)[2]) - 0.7, h)), H["air"])
    if p.flags.get("frontal_sinus"):
        # between the tables of the frontal bone, above the orbits
        fy = -(p.b_ant + p.skull_t * 0.6)
        sl, d = ellipsoid(g, (0, fy, -13 * s), (16 * s, 10.0, 9 * s))
        over(sl, soft_in(d, h) * diploe[sl] * bone[sl], H["air"])
    # cervical canal below the foramen magnum: cord in CSF in a bony ring
    sl, d = ellipsoid(g, (0, 18 * s, -80 * s), (16 * s, 16 * s, 14 * s))
    over(sl, soft_in(d, h), bone_vals)
    sl, d = ellipsoid(g, (0, 18 * s, -80 * s), (8 * s, 8 * s, 30 * s))
    over(sl, soft_in(d, h), H["csf"])
    sl, d = ellipsoid(g, (0, 18 * s, -80 * s), (5 * s, 5 * s, 40 * s))
    over(sl, soft_in(d, h), H["soft"] - 10)

    tissue = None
    if with_tissue:
        tissue = np.zeros(shape, np.uint8)
        tissue[f_head >= 0.5] = 5
        tissue[(bone >= 0.5) & (hu > 300)] = 4
        inb = cav >= 0.5
        tissue[inb] = 6
        tissue[inb & (cortex >= 0.5) & (csf < 0.5)] = 2
        tissue[inb & (deep >= 0.9) & (csf < 0.5)] = 7
        tissue[inb & (cortex < 0.1) & (deep < 0.1) & (csf < 0.1) & (pf < 0.1) & (stem < 0.1)
               & (np.abs(hu - H["wm"]) < 3)] = 3
        tissue[inb & (csf >= 0.5)] = 1
        tissue[inb & (vent >= 0.99)] = 8

    del diploe
    cent.update({"pf_floor": float(F.min())})
    depth = D.astype(F32, copy=False)
    cisterns = np.maximum(np.maximum(fis, syl), cist) * cav
    return Anatomy(grid=g, params=p, hu=hu, cav=cav, paren=paren.astype(F32), gm=gm_frac, csf_surface=csf_surface * cerebrum,
                   vent=vent * cav, depth=depth, cerebrum=cerebrum, centres=cent, tissue=tissue,
                   table_depth=D_s.astype(F32, copy=False), cisterns=cisterns.astype(F32, copy=False),
                   sulci=(csf_surface * cav).astype(F32, copy=False))
