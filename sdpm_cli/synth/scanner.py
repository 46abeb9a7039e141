"""CT acquisition of the canonical head: pose, slice partial volume, point spread, noise, artefacts.

The acquired grid is axial with identity direction (what scanners write for an untilted gantry); the
head's rotation and position live in the transform used to sample the canonical model. Each slice is
the mean of `n_sub` thin sub-slices across its thickness (slice sensitivity profile ~ a box), sampled
at matrix/work_factor in-plane and interpolated to the matrix; then a Gaussian in-plane point spread,
noise with a CT-like (band-pass) power spectrum at the protocol's sigma, optional beam-hardening
streaks between dense skull-base bones, the circular reconstruction field and 12-bit storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.synth.config import HeadParams, Protocol, SynthConfig
from sdpm_cli.synth.fields import F32, Grid, rot_matrix, soft_in

HU_MIN, HU_MAX = -1024, 3071  # 12-bit storage with intercept -1024


@dataclass(frozen=True)
class Acquisition:
    protocol: Protocol
    angles_deg: tuple[float, float, float]  # pitch, yaw, roll of the head
    R: np.ndarray                           # canonical -> acquired rotation
    t: np.ndarray                           # acquired position of the canonical origin (mm)
    origin: tuple[float, float, float]      # physical centre of voxel [0, 0, 0] (x, y, z)
    n_slices: int
    n_sub: int
    deform: Optional[sitk.Transform] = None  # smooth displacement of the canonical anatomy (or none)
    deform_mm: float = 0.0                   # its largest displacement

    @property
    def spacing(self) -> tuple[float, float, float]:
        p = self.protocol
        return (p.pixel_mm, p.pixel_mm, p.thickness_mm)

    def reference(self) -> sitk.Image:
        img = sitk.Image([self.protocol.matrix, self.protocol.matrix, self.n_slices], sitk.sitkUInt8)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        return img


def draw_acquisition(rng: np.random.Generator, head: HeadParams, prot: Protocol, cfg: SynthConfig,
                     grid: Optional[Grid] = None, rng_deform: Optional[np.random.Generator] = None) -> Acquisition:
    mp, my, mr = cfg.rotation_deg
    angles = (float(rng.uniform(-mp, mp)), float(rng.uniform(-my, my)), float(rng.uniform(-mr, mr)))
    R = rot_matrix(*angles)
    s = head.scale
    table_z = float(rng.uniform(-150.0, 150.0))
    img_c = rng.uniform(-5.0, 5.0, 2)
    sh = cfg.ranges.shift_mm
    t = np.array([img_c[0] + rng.uniform(-sh, sh), img_c[1] + rng.uniform(-1.2 * sh, 1.2 * sh), table_z])
    # from just below the foramen magnum to just above the vertex (in the acquired frame)
    top = head.c_up * 1.02 + head.skull_t + head.scalp_t + 3.0
    z_lo = table_z - 68.0 * s + float(rng.uniform(-6.0, 3.0))
    z_hi = table_z + top * np.cos(np.deg2rad(max(abs(angles[0]), abs(angles[2])))) + 2.0
    thk = prot.thickness_mm
    n = int(np.ceil((z_hi - z_lo) / thk))
    px = prot.pixel_mm
    x0 = img_c[0] - prot.fov_mm / 2 + px / 2
    y0 = img_c[1] - prot.fov_mm / 2 + px / 2
    n_sub = max(2, int(np.ceil(thk / 1.0 - 1e-6)))
    origin = tuple(round(float(v), 3) for v in (x0, y0, z_lo + thk / 2))  # exact in DICOM decimal strings
    deform, dmax = None, 0.0
    lo, hi = cfg.ranges.deform_mm
    if grid is not None and rng_deform is not None and hi > 0:
        dmax = float(rng_deform.uniform(lo, hi))
        deform = random_deformation(rng_deform, grid, dmax) if dmax > 0.5 else None
        dmax = dmax if deform is not None else 0.0
    return Acquisition(prot, angles, R, t, origin, n, n_sub, deform, dmax)


def random_deformation(rng: np.random.Generator, grid: Grid, max_mm: float, lattice_mm: float = 40.0,
                       step_mm: float = 6.0) -> sitk.Transform:
    """A smooth random displacement field over the canonical head (largest displacement = max_mm).

    Random vectors on a coarse lattice (~lattice_mm apart), cubic-interpolated onto a step_mm grid that
    SimpleITK's DisplacementFieldTransform interpolates linearly: smooth, cheap, and invertible for
    displacements well below the lattice spacing (the anatomy bends; it does not fold).
    """
    from scipy import ndimage

    ext = np.array([grid.shape[2], grid.shape[1], grid.shape[0]], float) * grid.h  # x, y, z mm
    n_c = np.maximum(2, np.ceil(ext / lattice_mm).astype(int) + 1)
    n_f = np.maximum(2, np.ceil(ext / step_mm).astype(int) + 1)
    coarse = rng.standard_normal((3, n_c[2], n_c[1], n_c[0]))
    zoom = [(f - 1) / (c - 1) for f, c in zip(n_f[::-1], n_c[::-1])]
    fine = np.stack([ndimage.zoom(c, zoom, order=3, mode="nearest") for c in coarse], axis=-1)  # [z, y, x, 3]
    mag = np.sqrt((fine ** 2).sum(-1)).max()
    fine *= max_mm / max(mag, 1e-6)
    img = sitk.GetImageFromArray(fine.astype(np.float64), isVector=True)
    img.SetOrigin(grid.origin)
    img.SetSpacing(tuple(float(e / (f - 1)) for e, f in zip(ext, n_f)))
    return sitk.DisplacementFieldTransform(img)


def _to_sitk(a: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(a)
    img.SetOrigin(grid.origin)
    img.SetSpacing((grid.h,) * 3)
    return img


def _transform(acq: Acquisition) -> sitk.AffineTransform:
    """Acquired physical point -> canonical point: p_can = R^T (p_acq - t)."""
    tr = sitk.AffineTransform(3)
    rt = acq.R.T
    tr.SetMatrix(rt.ravel().tolist())
    tr.SetTranslation((-rt @ acq.t).tolist())
    return tr


def _full_transform(acq: Acquisition) -> sitk.Transform:
    """Acquired point -> canonical point, then the anatomy's smooth deformation (when there is one)."""
    if acq.deform is None:
        return _transform(acq)
    comp = sitk.CompositeTransform(3)
    comp.AddTransform(acq.deform)   # ITK applies the last-added transform first: rigid, then deform
    comp.AddTransform(_transform(acq))
    return comp


def _sample(src: sitk.Image, acq: Acquisition, size, spacing, origin, default: float,
            interp=sitk.sitkLinear) -> np.ndarray:
    ref = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    ref.SetSpacing([float(v) for v in spacing])
    ref.SetOrigin([float(v) for v in origin])
    out = sitk.Resample(src, ref, _full_transform(acq), interp, float(default), src.GetPixelID())
    return sitk.GetArrayFromImage(out)  # a copy: a view would dangle once `out` is freed


def _sub_origin(acq: Acquisition, i0: int, j0: int, k0: int, step_xy: float, offset_xy: float):
    thk = acq.protocol.thickness_mm
    px = acq.protocol.pixel_mm
    return (acq.origin[0] + i0 * px + offset_xy, acq.origin[1] + j0 * px + offset_xy,
            acq.origin[2] - thk / 2 + k0 * thk + thk / (2 * acq.n_sub))


def sample_volume(hu: np.ndarray, grid: Grid, acq: Acquisition, work_factor: int) -> np.ndarray:
    """Partial-volume slices on the matrix (float32 [Z, M, M]) before blur and noise."""
    p = acq.protocol
    m, wf = p.matrix, work_factor
    mw = m // wf
    px = p.pixel_mm
    size = (mw, mw, acq.n_slices * acq.n_sub)
    spacing = (px * wf, px * wf, p.thickness_mm / acq.n_sub)
    origin = _sub_origin(acq, 0, 0, 0, px * wf, (wf - 1) * px / 2)
    fine = _sample(_to_sitk(hu, grid), acq, size, spacing, origin, -1000.0)
    vol = fine.reshape(acq.n_slices, acq.n_sub, mw, mw).mean(axis=1, dtype=F32)
    if wf == 2:
        vol = _upsample2_inplane(vol)
    return vol


def _upsample2_inplane(v: np.ndarray) -> np.ndarray:
    """Linear x2 along y and x where coarse pixel j covers fine pixels 2j and 2j+1."""
    for ax in (1, 2):
        n = v.shape[ax]
        prev = np.take(v, np.r_[0, np.arange(n - 1)], axis=ax)
        nxt = np.take(v, np.r_[np.arange(1, n), n - 1], axis=ax)
        even = 0.75 * v + 0.25 * prev
        odd = 0.75 * v + 0.25 * nxt
        out = np.stack([even, odd], axis=ax + 1)
        shp = list(v.shape)
        shp[ax] = 2 * n
        v = out.reshape(shp).astype(F32, copy=False)
    return v


def add_head_rest(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> dict:
    """Foam pad and a curved carbon/plastic cradle behind the occiput, fixed to the scanner."""
    p = acq.protocol
    px, m = p.pixel_mm, p.matrix
    head = vol > -500
    rows = np.flatnonzero(head.any(axis=(0, 2)))
    if rows.size == 0:
        return {}
    y_back = acq.origin[1] + rows.max() * px
    gap = float(rng.uniform(4.0, 14.0))
    rc = float(rng.uniform(80.0, 100.0))
    thick = float(rng.uniform(2.5, 5.0))
    shell_hu = float(rng.uniform(80.0, 350.0))
    foam_hu = float(rng.uniform(-960.0, -880.0))
    xc = float(acq.t[0])
    yc = y_back + gap - rc
    xs = acq.origin[0] + px * np.arange(m, dtype=F32)
    ys = acq.origin[1] + px * np.arange(m, dtype=F32)
    dist = np.sqrt((xs[None, :] - xc) ** 2 + (ys[:, None] - yc) ** 2)
    lower = soft_in(yc + 0.5 * rc - ys[:, None], px) * np.ones_like(dist)
    shell = (soft_in(dist - (rc + thick), px) - soft_in(dist - rc, px)) * lower
    foam = soft_in(dist - rc, px) * soft_in(rc - gap - dist, px) * lower
    layer = np.maximum(-1000 + shell * (shell_hu + 1000), -1000 + foam * (foam_hu + 1000)).astype(F32)
    np.maximum(vol, layer[None], out=vol)
    return {"gap_mm": round(gap, 1), "shell_hu": round(shell_hu, 1)}


def _noise_filter(m: int, px: float, f0: float) -> np.ndarray:
    fy = np.fft.fftfreq(m, d=px)
    fx = np.fft.rfftfreq(m, d=px)
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    nps = f * np.exp(-((f / f0) ** 2))  # ramp x apodisation: band-pass like a soft-tissue kernel
    return np.sqrt(nps).astype(F32)


def blur_and_noise(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator, scale_z: np.ndarray) -> None:
    """In-plane Gaussian PSF and correlated noise (sigma * scale_z per slice), in place."""
    from scipy import fft

    p = acq.protocol
    m, px = p.matrix, p.pixel_mm
    fy = np.fft.fftfreq(m, d=px)
    fx = np.fft.rfftfreq(m, d=px)
    f2 = (fy[:, None] ** 2 + fx[None, :] ** 2).astype(F32)
    mtf = np.exp(-2 * np.pi ** 2 * p.psf_sigma_mm ** 2 * f2)
    if p.psf_tail > 0:  # Gaussian core + Lorentzian tail (its transfer function is exp(-2 pi gamma |f|))
        mtf = (1 - p.psf_tail) * mtf + p.psf_tail * np.exp(-2 * np.pi * p.psf_tail_mm * np.sqrt(f2))
    if p.edge_boost > 0:  # sharp kernel: lift mid frequencies (edges overshoot), roll off at the top
        fc = 0.6 * p.nps_f0 + 0.15
        mtf = mtf * (1 + p.edge_boost * (f2 / fc ** 2) * np.exp(-f2 / (2 * fc ** 2)) * np.e / 2)
    mtf = mtf.astype(F32)
    nf = _noise_filter(m, px, p.nps_f0)
    spec_shape = (vol.shape[0], m, m // 2 + 1)
    white = rng.standard_normal(spec_shape, dtype=F32) + 1j * rng.standard_normal(spec_shape, dtype=F32)
    noise = fft.irfft2(white * nf, s=(m, m), workers=-1).astype(F32)
    noise *= F32(1.0) / F32(noise.std() + 1e-12)
    noise *= (F32(p.noise_sigma) * scale_z.astype(F32))[:, None, None]
    blurred = fft.irfft2(fft.rfft2(vol, workers=-1) * mtf, s=(m, m), workers=-1).astype(F32)
    vol[...] = blurred + noise


def noise_scale(vol: np.ndarray) -> np.ndarray:
    """Per-slice noise factor: slices through the thick skull base (more bone) are noisier."""
    bone = (vol > 400).sum(axis=(1, 2)).astype(float)
    ref = np.median(bone[bone > 0]) if np.any(bone > 0) else 1.0
    return np.clip(1.0 + 0.35 * (bone / max(ref, 1.0) - 1.0), 1.0, 1.7)


def add_streaks(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator, amp_hu=(8.0, 25.0)) -> int:
    """Beam-hardening: a dark band between dense petrous bones and faint streaks from them (in place)."""
    p = acq.protocol
    px, m = p.pixel_mm, p.matrix
    cx = (acq.t[0] - acq.origin[0]) / px
    head = np.flatnonzero((vol > -500).any(axis=(0, 1)))
    rows = np.flatnonzero((vol > -500).any(axis=(0, 2)))
    if head.size == 0:
        return 0
    box = (slice(max(rows[0] - 2, 0), min(rows[-1] + 3, m)), slice(max(head[0] - 2, 0), min(head[-1] + 3, m)))
    ys, xs = np.mgrid[box[0], box[1]].astype(F32)
    n = 0
    amp = float(rng.uniform(*amp_hu))
    width = float(rng.uniform(2.0, 4.0)) / px
    for k in range(vol.shape[0]):
        # only through the skull base (petrous level, head frame z ~ -58..-18 mm)
        z_head = acq.origin[2] + k * p.thickness_mm - acq.t[2]
        if not -58.0 <= z_head <= -18.0:
            continue
        sl = vol[k][box]
        dense = sl > 1100
        if dense.sum() * px * px < 120.0:
            continue
        cols = np.flatnonzero(dense.any(axis=0))
        cxb = int(np.clip(cx - box[1].start, 1, dense.shape[1] - 1))
        left, right = dense[:, :cxb], dense[:, cxb:]
        if left.sum() < 20 or right.sum() < 20:
            continue
        ly, lx = np.argwhere(left).mean(axis=0) + np.array([box[0].start, box[1].start])
        ry, rx = np.argwhere(right).mean(axis=0) + np.array([box[0].start, box[1].start + cxb])
        d = np.array([rx - lx, ry - ly], F32)
        length = float(np.hypot(*d))
        if length < 10 or cols.size == 0:
            continue
        d /= length
        tpar = (xs - lx) * d[0] + (ys - ly) * d[1]
        dperp = np.abs(-(xs - lx) * d[1] + (ys - ly) * d[0])
        along = np.clip(np.minimum(tpar, length - tpar) / (0.15 * length), 0, 1)
        soft = ((sl > -300) & (sl < 150)).astype(F32)
        weight = min(1.0, dense.sum() * px * px / 400.0)
        band = np.exp(-0.5 * (dperp / width) ** 2) * along
        streak = np.zeros_like(sl)
        for (cy0, cx0) in ((ly, lx), (ry, rx)):
            for ang in rng.uniform(0, np.pi, 3):
                dp = np.abs(-(xs - cx0) * np.sin(ang) + (ys - cy0) * np.cos(ang))
                r = np.hypot(xs - cx0, ys - cy0)
                streak += float(rng.choice([-1, 1])) * np.exp(-0.5 * (dp / (0.8 / px)) ** 2) * np.exp(-r * px / 40.0)
        sl += soft * weight * (-amp * band + 0.4 * amp * streak)
        n += 1
    return n


def apply_fov(vol: np.ndarray, acq: Acquisition) -> None:
    p = acq.protocol
    m = p.matrix
    c = (m - 1) / 2
    yy, xx = np.ogrid[0:m, 0:m]
    outside = (yy - c) ** 2 + (xx - c) ** 2 > (m / 2) ** 2
    vol[:, outside] = HU_MIN


def quantise(vol: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(vol), HU_MIN, HU_MAX).astype(np.int16)


def sample_fraction(frac: np.ndarray, sl, grid: Grid, acq: Acquisition) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Partial-volume fraction of a canonical crop on the acquired matrix (only where it can be non-zero)."""
    p = acq.protocol
    px, thk = p.pixel_mm, p.thickness_mm
    lo = np.array([grid.origin[i] + grid.h * sl[2 - i].start for i in range(3)]) - grid.h
    hi = np.array([grid.origin[i] + grid.h * (sl[2 - i].stop - 1) for i in range(3)]) + grid.h
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    acq_pts = corners @ acq.R.T + acq.t
    o = np.array(acq.origin)
    ij = (acq_pts[:, :2] - o[:2]) / px
    kk = (acq_pts[:, 2] - o[2]) / thk
    m = p.matrix
    mi, mk = 1 + int(np.ceil(acq.deform_mm / px)), 1 + int(np.ceil(acq.deform_mm / thk))  # the deformation moves it
    i0, i1 = max(0, int(np.floor(ij[:, 0].min())) - mi), min(m, int(np.ceil(ij[:, 0].max())) + 1 + mi)
    j0, j1 = max(0, int(np.floor(ij[:, 1].min())) - mi), min(m, int(np.ceil(ij[:, 1].max())) + 1 + mi)
    k0, k1 = max(0, int(np.floor(kk.min())) - mk), min(acq.n_slices, int(np.ceil(kk.max())) + 1 + mk)
    out_sl = (slice(k0, k1), slice(j0, j1), slice(i0, i1))
    if i1 <= i0 or j1 <= j0 or k1 <= k0:
        return out_sl, np.zeros((max(k1 - k0, 0), max(j1 - j0, 0), max(i1 - i0, 0)), F32)
    crop_grid = Grid(origin=tuple(float(grid.origin[i] + grid.h * sl[2 - i].start) for i in range(3)),
                     h=grid.h, shape=frac.shape)
    size = (i1 - i0, j1 - j0, (k1 - k0) * acq.n_sub)
    origin = _sub_origin(acq, i0, j0, k0, px, 0.0)
    fine = _sample(_to_sitk(np.ascontiguousarray(frac, F32), crop_grid), acq, size, (px, px, thk / acq.n_sub), origin, 0.0)
    return out_sl, fine.reshape(k1 - k0, acq.n_sub, j1 - j0, i1 - i0).mean(axis=1, dtype=F32)


def sample_tissue(tissue: np.ndarray, grid: Grid, acq: Acquisition) -> np.ndarray:
    """Tissue class at each voxel centre (nearest neighbour)."""
    p = acq.protocol
    size = (p.matrix, p.matrix, acq.n_slices)
    out = _sample(_to_sitk(tissue, grid), acq, size, acq.spacing, acq.origin, 0, sitk.sitkNearestNeighbor)
    return np.array(out, np.uint8)


# ----------------------------------------------------------------------------- nuisance artefacts
# (label-preserving: none of these moves a lesion or changes the truth; they only change the image)


def _head_centre_px(vol: np.ndarray) -> tuple[float, float]:
    head = vol > -500
    ys, xs = np.nonzero(head.any(axis=0))
    if ys.size == 0:
        return (vol.shape[1] / 2.0, vol.shape[2] / 2.0)
    return (float(ys.mean()), float(xs.mean()))


def add_bias(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator, amp_hu: float) -> dict:
    """Low-frequency shading of soft tissue (calibration drift, cupping, beam hardening), in place.

    A smooth random field (~60 mm scale) plus a radial term (brighter or darker towards the skull),
    both up to amp_hu, applied to soft-tissue values only (-200..200 HU) so bone and air stay put. It is
    the hypodensity-like nuisance an infarct must be told apart from: slow, and blind to tissue borders.
    """
    from scipy import ndimage

    if amp_hu <= 0:
        return {}
    p = acq.protocol
    z, m = vol.shape[0], p.matrix
    f = 8
    cell = max(2.0, 60.0 / (p.pixel_mm * f))
    from sdpm_cli.synth.fields import coarse_noise

    coarse = coarse_noise(rng, (z, m // f, m // f), cell)
    field = ndimage.zoom(coarse, (1, f, f), order=1)[:, :m, :m]
    a_smooth, a_rad = float(rng.uniform(0, amp_hu)), float(rng.uniform(-amp_hu, amp_hu))
    cy, cx = _head_centre_px(vol)
    yy, xx = np.ogrid[0:m, 0:m]
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) * (p.pixel_mm / 75.0) ** 2
    bias = F32(a_smooth) * field + F32(a_rad) * (np.minimum(r2, 1.5).astype(F32) - F32(0.5))[None]
    soft = (vol > -200) & (vol < 200)
    vol += np.where(soft, bias, F32(0.0))
    return {"smooth_hu": round(a_smooth, 1), "radial_hu": round(a_rad, 1)}


def add_motion(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> dict:
    """Patient motion during a few slices: the slice is blended with a shifted, rotated copy (ghosting)."""
    from scipy import ndimage

    n = vol.shape[0]
    k0 = int(rng.integers(0, max(1, n - 1)))
    ks = list(range(k0, min(n, k0 + int(rng.integers(1, 5)))))
    px = acq.protocol.pixel_mm
    for k in ks:
        ang = np.deg2rad(float(rng.uniform(-3, 3)))
        shift = rng.uniform(-4, 4, 2) / px
        c = np.array(vol.shape[1:]) / 2.0
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        offset = c - rot @ c - shift
        ghost = ndimage.affine_transform(vol[k], rot, offset=offset, order=1, mode="nearest")
        w = F32(rng.uniform(0.2, 0.5))
        vol[k] = (1 - w) * vol[k] + w * ghost
    return {"slices": ks}


def add_metal(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> dict:
    """A small metal object (aneurysm clip, electrode, dental work) with radial bright/dark streaks."""
    p = acq.protocol
    px, m = p.pixel_mm, p.matrix
    head = vol > -300
    zs = np.flatnonzero(head.any(axis=(1, 2)))
    if zs.size == 0:
        return {}
    where = str(rng.choice(["intracranial", "scalp", "dental"], p=[0.5, 0.3, 0.2]))
    if where == "dental":
        k = int(zs[min(len(zs) - 1, int(rng.integers(0, 3)))])
    else:
        k = int(zs[int(rng.integers(len(zs) // 4, max(len(zs) // 4 + 1, 3 * len(zs) // 4)))])
    soft = np.argwhere((vol[k] > 0) & (vol[k] < 80)) if where == "intracranial" else np.argwhere(head[k])
    if len(soft) == 0:
        return {}
    cy, cx = soft[int(rng.integers(len(soft)))]
    if where == "scalp":  # move to the head's outer edge along the ray from its centre
        hy, hx = _head_centre_px(vol[k : k + 1])
        d = np.array([cy - hy, cx - hx], float)
        d /= np.linalg.norm(d) + 1e-6
        ray = [np.array([hy, hx]) + t * d for t in np.arange(0, m, 1.0)]
        inside = [q for q in ray if 0 <= q[0] < m and 0 <= q[1] < m and head[k][int(q[0]), int(q[1])]]
        if inside:
            cy, cx = inside[-1]
    r_mm = float(rng.uniform(1.0, 4.0))
    amp = float(rng.uniform(60.0, 400.0))
    ks = [k] + ([k + 1] if k + 1 < vol.shape[0] and rng.random() < 0.5 else [])
    yy, xx = np.mgrid[0:m, 0:m].astype(F32)
    dy, dx = yy - F32(cy), xx - F32(cx)
    rr = np.sqrt(dy * dy + dx * dx) * F32(px)
    for kk in ks:
        streak = np.zeros((m, m), F32)
        for ang in rng.uniform(0, np.pi, int(rng.integers(4, 12))):
            dperp = np.abs(-dx * np.sin(ang) + dy * np.cos(ang)) * F32(px)
            streak += F32(rng.choice([-1.0, 1.0])) * np.exp(-0.5 * (dperp / 0.7) ** 2)
        streak *= F32(amp) / (1.0 + rr / F32(25.0))
        inside = vol[kk] > -500
        vol[kk] += np.where(inside, streak, F32(0.0))
        vol[kk][rr <= r_mm] = F32(3071.0)
    return {"where": where, "slice": k, "radius_mm": round(r_mm, 1), "streak_hu": round(amp, 0)}


def add_pads(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> dict:
    """Foam pads beside the head and a strap across the forehead (immobilisation), outside the head."""
    p = acq.protocol
    px, m = p.pixel_mm, p.matrix
    out: dict = {}
    head = (vol > -500).any(axis=0)
    ys, xs = np.nonzero(head)
    if ys.size == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    foam = F32(rng.uniform(-950.0, -800.0))
    w = int(rng.uniform(10, 25) / px)
    yy = slice(int(y0 + 0.2 * (y1 - y0)), int(y0 + 0.8 * (y1 - y0)))
    for xa, xb in ((max(0, x0 - w - 2), max(0, x0 - 2)), (min(m, x1 + 2), min(m, x1 + w + 2))):
        block = vol[:, yy, xa:xb]
        np.maximum(block, foam, out=block)
    out["foam_hu"] = round(float(foam), 0)
    if rng.random() < 0.5:  # a strap over the forehead: a thin soft-tissue-dense band just outside the skin
        t = max(1, int(rng.uniform(1.0, 3.0) / px))
        strap = F32(rng.uniform(-100.0, 100.0))
        for k in range(vol.shape[0]):
            cols = np.flatnonzero((vol[k] > -500).any(axis=0))
            if cols.size == 0:
                continue
            for c in cols[:: max(1, len(cols) // 64)]:
                rows = np.flatnonzero(vol[k][:, c] > -500)
                if rows.size:
                    r0 = rows[0]
                    vol[k, max(0, r0 - t - 1) : max(0, r0 - 1), c : c + max(1, len(cols) // 64)] = strap
        out["strap_hu"] = round(float(strap), 0)
    return out
