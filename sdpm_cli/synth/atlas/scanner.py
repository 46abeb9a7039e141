"""Family B's CT acquisition: pose and deformation, slice sensitivity, PSF, noise texture, artefacts.

Independent of family A's scanner. The acquired grid is axial (identity direction). One transform maps
an acquired point to the atlas: p -> q = c + S^-1 R^T (p - t) (pose and anisotropic scale about the head
centre) -> a = q + u(q) (a smooth random displacement field of a few mm). The image and every lesion's
truth fraction go through this same transform, so they agree exactly.

* slice sensitivity: each slice is a weighted mean of sub-slices over 1.2 x the nominal thickness
  (a trapezoid whose full width at half maximum is the thickness); the truth uses the same weights;
* in-plane: the head is sampled at matrix/work_factor, then band-limited (Fourier) interpolation to
  the matrix, with a Gaussian or Lorentzian point spread and a cosine roll-off below the sampling limit;
* noise: white noise through a Butterworth or Hann low-pass of random cut-off (sigma 2-8 HU by slice
  thickness), per slice scaled up through the skull base;
* beam hardening: a cupping term (the centre of the head a few HU darker) and, occasionally, dark and
  bright streaks along chords between dense skull-base bone;
* a head holder (curved shell with a foam pad), the circular reconstruction field, int16 HU
  clipped to [-1024, 3071].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from sdpm_cli.synth.atlas._util import F32, bspline_weights, rotation
from sdpm_cli.synth.atlas.head import HEAD_CENTRE
from sdpm_cli.synth.atlas.template import EXTENT, Template

HU_MIN, HU_MAX = -1024, 3071
KERNELS = ("H30s", "Br36f", "FC23", "SOFT", "UC", "J37s", "BRAIN")
# noise sigma (HU) by slice thickness: thinner slices are noisier; all within 2-8 HU
NOISE_HU = {5.0: (2.0, 5.0), 2.5: (3.0, 6.5), 1.0: (4.5, 8.0)}


@dataclass(frozen=True)
class Protocol:
    thickness_mm: float
    fov_mm: float
    matrix: int
    noise_sigma: float
    noise_filter: str       # butterworth | hann
    noise_cutoff: float     # cycles/mm
    noise_order: int
    psf: str                # gaussian | lorentzian
    psf_mm: float           # Gaussian sigma or Lorentzian half width
    kernel: str
    kvp: int
    cupping_hu: float
    streaks: bool

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / self.matrix

    @property
    def name(self) -> str:
        return f"head-{self.thickness_mm:g}mm"


def draw_protocol(rng: np.random.Generator, cfg) -> Protocol:
    w = np.asarray(cfg.thickness_weights, float)
    thk = float(cfg.thicknesses_mm[int(rng.choice(len(w), p=w / w.sum()))])
    lo, hi = NOISE_HU.get(thk, (2.0 + 2.5 / np.sqrt(thk), 4.0 + 4.0 / np.sqrt(thk)))
    lo, hi = max(2.0, min(lo, 8.0)), max(2.0, min(hi, 8.0))
    pixel = round(float(rng.uniform(*cfg.fov_mm)) / cfg.matrix, 4)  # 4 decimals: exact in DICOM strings
    filt = "butterworth" if rng.random() < 0.6 else "hann"
    return Protocol(
        thickness_mm=thk,
        fov_mm=pixel * cfg.matrix,
        matrix=int(cfg.matrix),
        noise_sigma=float(rng.uniform(lo, hi)),
        noise_filter=filt,
        noise_cutoff=float(rng.uniform(0.3, 0.7) if filt == "butterworth" else rng.uniform(0.5, 1.0)),
        noise_order=int(rng.integers(2, 5)),
        psf="gaussian" if rng.random() < 0.5 else "lorentzian",
        psf_mm=float(rng.uniform(0.35, 0.7)),
        kernel=str(rng.choice(KERNELS)),
        kvp=int(rng.choice([100, 120, 120, 140])),
        cupping_hu=float(rng.uniform(0.0, 6.0)),
        streaks=bool(rng.random() < cfg.streak_prob),
    )


@dataclass
class Geometry:
    R: np.ndarray          # head rotation (canonical -> acquired)
    scale: np.ndarray      # anisotropic head scale (x, y, z)
    t: np.ndarray          # acquired position of the head centre
    angles: tuple[float, float, float]
    field: sitk.Image      # displacement field u(q) on the canonical frame (mm)
    max_disp: float
    origin: tuple[float, float, float]
    n_slices: int
    n_sub: int
    weights: np.ndarray    # slice sensitivity weights of the sub-slices (sum 1)
    protocol: Protocol
    work_factor: int
    sub_offsets: np.ndarray | None = None  # sub-slice centres relative to the slice centre (mm)

    @property
    def spacing(self) -> tuple[float, float, float]:
        p = self.protocol
        return (p.pixel_mm, p.pixel_mm, p.thickness_mm)

    def reference(self) -> sitk.Image:
        p = self.protocol
        img = sitk.Image([p.matrix, p.matrix, self.n_slices], sitk.sitkUInt8)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        return img

    def transform(self) -> sitk.Transform:
        """Acquired point -> atlas point (pose, scale, then the displacement field)."""
        m = np.diag(1.0 / self.scale) @ self.R.T
        aff = sitk.AffineTransform(3)
        aff.SetMatrix(m.ravel().tolist())
        aff.SetTranslation((np.asarray(HEAD_CENTRE) - m @ self.t).tolist())
        disp = sitk.DisplacementFieldTransform(sitk.Image(self.field))
        return sitk.CompositeTransform([disp, aff])  # the affine is applied first

    def forward(self, a) -> np.ndarray:
        """Atlas points [N, 3] -> acquired points, ignoring the (small) displacement field."""
        a = np.atleast_2d(np.asarray(a, float))
        return self.t[None, :] + (a - np.asarray(HEAD_CENTRE)[None, :]) @ (self.R @ np.diag(self.scale)).T

    def to_acquired(self, a) -> np.ndarray:
        """Exact acquired position of one atlas point (inverts the displacement by fixed-point steps)."""
        a = np.asarray(a, float)
        tr = self.transform()
        p = self.forward(a)[0]
        lin = self.R @ np.diag(self.scale)
        for _ in range(6):
            p = p + lin @ (a - np.asarray(tr.TransformPoint(p.tolist())))
        return p


def draw_geometry(rng: np.random.Generator, tpl: Template, prot: Protocol, head, cfg,
                  surface_out: np.ndarray) -> Geometry:
    """Pose (up to ~12 degrees), anisotropic scale 0.85-1.15, displacement field and the slice stack."""
    angles = (float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12)))
    R = rotation(*angles)
    s = float(rng.uniform(0.88, 1.06))  # the ICBM152 brain is ~5% larger than the average adult's
    scale = np.clip(s * rng.uniform(0.96, 1.04, 3), 0.85, 1.15)
    # displacement field: random nodes every ~40 mm, cubic B-spline interpolated to a 5 mm grid
    step = 5.0
    size = [int(np.ceil((EXTENT[a][1] - EXTENT[a][0]) / step)) + 1 for a in range(3)]  # x, y, z
    nodes = [max(4, int(round((EXTENT[a][1] - EXTENT[a][0]) / 40.0)) + 3) for a in range(3)]
    comps = []
    for _ in range(3):
        c = rng.standard_normal((nodes[2], nodes[1], nodes[0])) * head.deform_sigma
        wz, wy, wx = (bspline_weights(size[a], nodes[a]).astype(float) for a in (2, 1, 0))
        comps.append(np.einsum("ia,jb,kc,abc->ijk", wz, wy, wx, c, optimize=True))
    disp = np.stack(comps, -1)
    field = sitk.GetImageFromArray(disp, isVector=True)
    field.SetOrigin((EXTENT[0][0], EXTENT[1][0], EXTENT[2][0]))
    field.SetSpacing((step,) * 3)
    max_disp = float(np.sqrt((disp ** 2).sum(-1)).max())

    thk = prot.thickness_mm
    t = np.array([rng.uniform(-6, 6), rng.uniform(-6, 12), rng.uniform(-120.0, 120.0)])
    geo = Geometry(R=R, scale=scale, t=t, angles=angles, field=field, max_disp=max_disp, origin=(0, 0, 0),
                   n_slices=1, n_sub=1, weights=np.ones(1), protocol=prot, work_factor=cfg.work_factor)
    # from just below the foramen magnum to just above the vertex
    fm = np.array([[0.0, 40.0, -60.0 + rng.uniform(-6.0, 3.0)]])
    z_lo = float(geo.forward(fm)[0, 2])
    z_hi = float(geo.forward(surface_out)[:, 2].max()) + float(rng.uniform(1.0, 5.0))
    n = int(np.ceil((z_hi - z_lo) / thk))
    px = prot.pixel_mm
    c_xy = t[:2] + np.array([0.0, -6.0]) + rng.uniform(-5.0, 5.0, 2)  # the head is centred ~6 mm anterior
    x0 = c_xy[0] - prot.fov_mm / 2 + px / 2
    y0 = c_xy[1] - prot.fov_mm / 2 + px / 2
    origin = tuple(round(float(v), 3) for v in (x0, y0, z_lo + thk / 2))
    n_sub = max(3, int(np.ceil(1.2 * thk / 1.0 - 1e-6)))
    zs = (-0.6 + (np.arange(n_sub) + 0.5) * 1.2 / n_sub)       # sub-slice centres / thickness
    w = np.clip((0.6 - np.abs(zs)) / 0.2, 0.0, 1.0)             # trapezoid, FWHM = thickness
    geo.origin, geo.n_slices, geo.n_sub, geo.weights = origin, n, n_sub, (w / w.sum()).astype(F32)
    geo.sub_offsets = (zs * thk).astype(float)
    return geo


def _sample(src: np.ndarray, src_origin, h: float, geo: Geometry, ij0, nij, k0: int, nk: int, step: int,
            default: float) -> np.ndarray:
    """Slice-sensitivity weighted samples [nk, nj, ni] of a canonical array on the acquired grid, at
    every `step`-th pixel from pixel ij0 (x, y)."""
    p = geo.protocol
    img = sitk.GetImageFromArray(np.ascontiguousarray(src, F32))
    img.SetOrigin(tuple(float(v) for v in src_origin))
    img.SetSpacing((float(h),) * 3)
    px = p.pixel_mm
    out = np.zeros((nk, nij[1], nij[0]), F32)
    tr = geo.transform()
    for s, (dz, w) in enumerate(zip(geo.sub_offsets, geo.weights)):
        ref = sitk.Image([int(nij[0]), int(nij[1]), int(nk)], sitk.sitkUInt8)
        ref.SetSpacing((px * step, px * step, p.thickness_mm))
        ref.SetOrigin((geo.origin[0] + ij0[0] * px, geo.origin[1] + ij0[1] * px,
                       geo.origin[2] + k0 * p.thickness_mm + float(dz)))
        res = sitk.Resample(img, ref, tr, sitk.sitkLinear, float(default), sitk.sitkFloat32)
        out += F32(w) * sitk.GetArrayViewFromImage(res)
    return out


def sample_image(hu: np.ndarray, tpl: Template, geo: Geometry) -> np.ndarray:
    """The canonical HU volume on the coarse acquired grid (matrix / work_factor), [n, mw, mw]."""
    m, wf = geo.protocol.matrix, geo.work_factor
    mw = m // wf
    return _sample(hu, tpl.origin, tpl.h, geo, (0, 0), (mw, mw), 0, geo.n_slices, wf, -1000.0)


def acquired_box(geo: Geometry, lo, hi):
    """Coarse pixel box (i0, i1, j0, j1) and slice range (k0, k1) covering an atlas box [lo, hi] (LPS)."""
    p = geo.protocol
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    pts = geo.forward(corners)
    marg = geo.max_disp * float(geo.scale.max()) + 3.0
    step = p.pixel_mm * geo.work_factor
    mw = p.matrix // geo.work_factor
    i0 = int(np.floor((pts[:, 0].min() - marg - geo.origin[0]) / step))
    i1 = int(np.ceil((pts[:, 0].max() + marg - geo.origin[0]) / step)) + 2
    j0 = int(np.floor((pts[:, 1].min() - marg - geo.origin[1]) / step))
    j1 = int(np.ceil((pts[:, 1].max() + marg - geo.origin[1]) / step)) + 2
    k0 = int(np.floor((pts[:, 2].min() - marg - geo.origin[2]) / p.thickness_mm))
    k1 = int(np.ceil((pts[:, 2].max() + marg - geo.origin[2]) / p.thickness_mm)) + 2
    return (max(i0, 0), min(i1, mw), max(j0, 0), min(j1, mw), max(k0, 0), min(k1, geo.n_slices))


def sample_fraction(frac: np.ndarray, crop_origin, h: float, geo: Geometry, lo, hi):
    """Truth fraction of a canonical crop on the full acquired matrix: (slices, fraction array).

    Sampled every work_factor pixels (as the image) and linearly interpolated in-plane to the matrix.
    """
    m, wf = geo.protocol.matrix, geo.work_factor
    i0, i1, j0, j1, k0, k1 = acquired_box(geo, lo, hi)
    if i1 <= i0 or j1 <= j0 or k1 <= k0:
        return None, None
    mw = m // wf
    i1e, j1e = min(i1 + 1, mw), min(j1 + 1, mw)
    f = _sample(frac, crop_origin, h, geo, (i0 * wf, j0 * wf), (i1e - i0, j1e - j0), k0, k1 - k0, wf, 0.0)
    if wf == 2:
        f = _up2(f)
    fi0, fj0 = i0 * wf, j0 * wf
    fi1, fj1 = min(fi0 + f.shape[2], m), min(fj0 + f.shape[1], m)
    sl = (slice(k0, k1), slice(fj0, fj1), slice(fi0, fi1))
    return sl, f[:, : fj1 - fj0, : fi1 - fi0]


def _up2(a: np.ndarray) -> np.ndarray:
    """In-plane linear x2 upsampling where coarse sample j sits on fine sample 2j."""
    for ax in (1, 2):
        n = a.shape[ax]
        shp = list(a.shape)
        shp[ax] = 2 * n
        out = np.empty(shp, F32)
        ev = [slice(None)] * 3
        ev[ax] = slice(0, None, 2)
        od = [slice(None)] * 3
        od[ax] = slice(1, None, 2)
        nxt = np.take(a, np.r_[np.arange(1, n), n - 1], axis=ax)
        out[tuple(ev)] = a
        out[tuple(od)] = 0.5 * (a + nxt)
        a = out
    return a


def _head_rest(vol: np.ndarray, geo: Geometry, rng: np.random.Generator) -> dict:
    """A curved head holder (carbon shell, foam pad) behind the occiput, fixed to the scanner (coarse grid)."""
    p = geo.protocol
    step = p.pixel_mm * geo.work_factor
    head = vol > -500
    rows = np.flatnonzero(head.any(axis=(0, 2)))
    if rows.size == 0:
        return {}
    n = vol.shape[1]
    y_back = geo.origin[1] + rows.max() * step
    pad = float(rng.uniform(3.0, 12.0))
    rx, ry = float(rng.uniform(85.0, 110.0)), float(rng.uniform(60.0, 85.0))
    thick = float(rng.uniform(3.0, 6.0))
    shell_hu = float(rng.uniform(150.0, 450.0))
    foam_hu = float(rng.uniform(-950.0, -850.0))
    xc, yc = float(geo.t[0]), y_back + pad - ry
    xs = geo.origin[0] + step * np.arange(n, dtype=F32)
    ys = geo.origin[1] + step * np.arange(n, dtype=F32)
    q = np.sqrt(((xs[None, :] - xc) / rx) ** 2 + ((ys[:, None] - yc) / ry) ** 2)  # 1 on the inner surface
    r_mm = (q - 1.0) * ry
    lower = (ys[:, None] > yc + 0.35 * ry) * np.ones((1, n), bool)
    shell = np.clip(np.minimum(r_mm / step + 0.5, (thick - r_mm) / step + 0.5), 0, 1) * lower
    foam = np.clip(np.minimum(-r_mm / step + 0.5, (r_mm + pad) / step + 0.5), 0, 1) * lower
    layer = np.maximum(-1000 + shell * (shell_hu + 1000), -1000 + foam * (foam_hu + 1000)).astype(F32)
    np.maximum(vol, layer[None], out=vol)
    return {"pad_mm": round(pad, 1), "shell_hu": round(shell_hu, 1)}


def _cupping(vol: np.ndarray, geo: Geometry) -> None:
    """Residual beam hardening: the head centre darker by up to cupping_hu (parabolic in each slice)."""
    c = geo.protocol.cupping_hu
    if c <= 0:
        return
    n = vol.shape[1]
    yy, xx = np.mgrid[0:n, 0:n].astype(F32)
    for k in range(vol.shape[0]):
        head = vol[k] > -300
        if head.sum() < 50:
            continue
        cy, cx = np.argwhere(head).mean(axis=0)
        r2 = float(head.sum()) / np.pi
        prof = np.clip(1.0 - ((yy - cy) ** 2 + (xx - cx) ** 2) / r2, 0, 1)
        soft = (vol[k] > -200) & (vol[k] < 200)
        vol[k] -= F32(c) * prof * soft


def _streaks(vol: np.ndarray, geo: Geometry, rng: np.random.Generator) -> int:
    """Dark/bright streaks along chords between dense bone in slices through the skull base."""
    step = geo.protocol.pixel_mm * geo.work_factor
    n = vol.shape[1]
    yy, xx = np.mgrid[0:n, 0:n].astype(F32)
    count = 0
    for k in range(vol.shape[0]):
        # only through the skull base (petrous level), where bone is thickest across the head
        z_atlas = (geo.origin[2] + k * geo.protocol.thickness_mm - geo.t[2]) / geo.scale[2] + HEAD_CENTRE[2]
        if not -58.0 <= z_atlas <= -22.0:
            continue
        dense = vol[k] > 1000
        area = dense.sum() * step * step
        if area < 250.0:
            continue
        pts = np.argwhere(dense)
        soft = ((vol[k] > -150) & (vol[k] < 200)).astype(F32)
        for _ in range(int(rng.integers(2, 6))):
            a, b = pts[rng.integers(len(pts))], pts[rng.integers(len(pts))]
            d = (b - a).astype(float)
            L = float(np.hypot(*d))
            if L * step < 30.0:
                continue
            d /= L
            along = (yy - a[0]) * d[0] + (xx - a[1]) * d[1]
            perp = np.abs(-(yy - a[0]) * d[1] + (xx - a[1]) * d[0])
            w = float(rng.uniform(0.6, 1.5)) / step
            amp = float(rng.uniform(6.0, 20.0)) * min(1.0, area / 800.0)
            inside = np.clip(np.minimum(along, L - along) / (0.1 * L), 0, 1)
            beyond = np.exp(-np.maximum(np.maximum(-along, along - L), 0) * step / 25.0) * (1 - inside)
            prof = np.exp(-0.5 * (perp / w) ** 2)
            vol[k] += F32(amp) * (prof * (0.4 * beyond - inside) * soft).astype(F32)
        count += 1
    return count


def _spectrum_filters(geo: Geometry, n_coarse: int):
    p = geo.protocol
    m, px = p.matrix, p.pixel_mm
    fy = np.fft.fftfreq(m, d=px)
    fx = np.fft.rfftfreq(m, d=px)
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    if p.psf == "gaussian":
        mtf = np.exp(-2.0 * np.pi ** 2 * p.psf_mm ** 2 * f ** 2)
    else:
        mtf = np.exp(-2.0 * np.pi * p.psf_mm * f)
    fn = 0.5 / (px * m / n_coarse)  # the coarse grid's sampling limit
    roll = np.clip((f - 0.7 * fn) / (0.3 * fn), 0, 1)
    mtf *= 0.5 * (1 + np.cos(np.pi * roll))
    if p.noise_filter == "butterworth":
        nf = 1.0 / np.sqrt(1.0 + (f / p.noise_cutoff) ** (2 * p.noise_order))
    else:
        nf = np.where(f < p.noise_cutoff, 0.5 * (1 + np.cos(np.pi * f / p.noise_cutoff)), 0.0)
    # a soft FBP-like ramp at low frequencies (noise power drops towards DC)
    nf = nf * np.sqrt(np.clip(f / 0.08, 0.15, 1.0))
    return mtf.astype(F32), nf.astype(F32)


def _noise_gain(nf: np.ndarray, m: int) -> float:
    """Image-domain std of irfft2(white complex * nf), measured on fixed noise (deterministic)."""
    r = np.random.default_rng(12345)
    w = (r.standard_normal((2,) + nf.shape) + 1j * r.standard_normal((2,) + nf.shape)) * nf
    return float(np.fft.irfft2(w, s=(m, m)).std())


def finish(vol: np.ndarray, geo: Geometry, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Coarse partial-volume slices -> the reconstructed int16 image on the matrix (all artefacts)."""
    from scipy import fft

    p = geo.protocol
    m = p.matrix
    mw = vol.shape[1]
    info = {"head_rest": _head_rest(vol, geo, rng)}
    _cupping(vol, geo)
    info["streak_slices"] = _streaks(vol, geo, rng) if p.streaks else 0
    bone = (vol > 400).sum(axis=(1, 2)).astype(float)
    ref = np.median(bone[bone > 0]) if np.any(bone > 0) else 1.0
    slice_gain = np.clip(1.0 + 0.3 * (bone / max(ref, 1.0) - 1.0), 1.0, 1.6).astype(F32)
    mtf, nf = _spectrum_filters(geo, mw)
    out = np.empty((vol.shape[0], m, m), F32)
    gain = _noise_gain(nf, m)
    chunk = 8
    for k0 in range(0, vol.shape[0], chunk):
        v = vol[k0:k0 + chunk]
        spec = fft.rfft2(v, workers=1)
        full = np.zeros((v.shape[0], m, m // 2 + 1), np.complex64)
        hcut = mw // 2
        full[:, :hcut, : hcut + 1] = spec[:, :hcut, : hcut + 1]
        full[:, m - hcut + 1:, : hcut + 1] = spec[:, mw - hcut + 1:, : hcut + 1]
        full *= F32((m / mw) ** 2)
        full *= mtf
        shp = full.shape
        noise = (rng.standard_normal(shp, dtype=F32) + 1j * rng.standard_normal(shp, dtype=F32)) * nf
        noise *= (F32(p.noise_sigma / gain) * slice_gain[k0:k0 + chunk])[:, None, None]
        full += noise
        out[k0:k0 + chunk] = fft.irfft2(full, s=(m, m), workers=1)
    c = (m - 1) / 2
    yy, xx = np.ogrid[0:m, 0:m]
    out[:, (yy - c) ** 2 + (xx - c) ** 2 > (m / 2) ** 2] = HU_MIN
    return np.clip(np.rint(out), HU_MIN, HU_MAX).astype(np.int16), info


def sample_tissue(tissue: np.ndarray, tpl: Template, geo: Geometry) -> np.ndarray:
    """Tissue class at each voxel centre of the acquired grid (nearest neighbour), uint8 [n, m, m]."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(tissue, np.uint8))
    img.SetOrigin(tuple(float(v) for v in tpl.origin))
    img.SetSpacing((float(tpl.h),) * 3)
    ref = geo.reference()
    out = sitk.Resample(img, ref, geo.transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)
