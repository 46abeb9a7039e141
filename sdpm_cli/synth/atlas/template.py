"""The MNI ICBM152 2009a templates shipped in nilearn's wheel, and the maps family B derives from them.

Loaded once per process and cached (`load_template(h)`); every array is read-only. The grid is the
atlas frame resampled to `h` mm, axis-aligned LPS (x patient-left, y posterior, z superior), with room
for skull, scalp and the skull base around the intracranial cavity.

Derived maps (all from the atlas, none analytic):
* gm, wm      tissue probabilities (sum <= 1);
* sd          signed distance (mm, negative inside) to the intracranial cavity surface: the skull-stripped
              T1 template's mask (brain + the CSF it encloses), holes filled, its bottom continued as
              the spinal canal; the skull shell is built outside it;
* vent        CSF fraction inside the ventricular system: CSF-rich components deep inside the cavity
              (lateral, third and fourth ventricles), for intraventricular blood;
* vent_near   a smoothed ventricle indicator (periventricular atrophy widens the ventricles);
* par_smooth  parenchyma (gm + wm) smoothed over ~1.5 mm (atrophy erodes it where it is thin);
* territory_map(h)  approximate arterial territories (ACA, MCA, PCA, cerebellar) per hemisphere,
              the nearest of a few MNI seed points per territory;
* surface     points on the cavity surface (scan range, extra-axial collections).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdpm_cli.errors import UsageError

F32 = np.float32

ATLAS_FILES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
}
MISSING = "family atlas needs nilearn (pip install nilearn): it ships the MNI ICBM152 atlas"

# canonical grid extent (LPS mm): the atlas cavity spans x -72..72, y -73..107, z -72..82
EXTENT = ((-95.0, 95.0), (-100.0, 130.0), (-104.0, 104.0))

# territory ids (per hemisphere the seeds below are assigned by nearest distance, then merged)
TERRITORIES = {1: "ACA", 2: "MCA", 3: "PCA", 4: "cerebellar"}
# seeds in MNI RAS mm for the right hemisphere (x > 0); mirrored for the left. Nearest-seed partition
# of the parenchyma approximates the arterial territories (ACA medial/superior frontal-parietal, MCA
# lateral convexity and deep nuclei, PCA occipital/inferior temporal and thalamus, cerebellar).
_SEEDS_RAS = [
    (1, (8, 35, 40)), (1, (8, 0, 60)), (1, (8, -30, 62)), (1, (5, 38, -8)),
    (2, (38, 42, 8)), (2, (50, 0, 15)), (2, (52, -30, 25)), (2, (45, -55, 30)), (2, (48, 5, -25)),
    (2, (52, -25, -5)), (2, (25, 5, 5)), (2, (35, 20, 40)), (2, (35, -20, 50)), (2, (28, -28, 28)),
    (2, (38, -50, 42)), (2, (30, -5, 25)),
    (3, (20, -90, 5)), (3, (12, -80, 22)), (3, (38, -62, -12)), (3, (28, -40, -16)), (3, (12, -22, 2)),
    (4, (25, -65, -40)), (4, (8, -50, -35)), (4, (35, -75, -30)),
]


def atlas_dir() -> Path:
    """nilearn's data folder holding the ICBM152 2009a templates (without importing nilearn)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise UsageError(MISSING)
    d = Path(spec.origin).parent / "datasets" / "data"
    if not all((d / f).is_file() for f in ATLAS_FILES.values()):
        raise UsageError(MISSING)
    return d


@dataclass(frozen=True)
class Template:
    h: float
    origin: tuple[float, float, float]   # LPS mm of voxel [0, 0, 0]
    shape: tuple[int, int, int]          # (nz, ny, nx)
    gm: np.ndarray
    wm: np.ndarray
    sd: np.ndarray
    vent: np.ndarray
    vent_near: np.ndarray
    par_smooth: np.ndarray
    surface: np.ndarray                  # [N, 3] LPS points on the cavity surface (sd = 0)

    def axis(self, i: int) -> np.ndarray:
        n = self.shape[2 - i]
        return (self.origin[i] + self.h * np.arange(n)).astype(F32)

    def zyx(self, sl=None):
        z, y, x = self.axis(2), self.axis(1), self.axis(0)
        if sl is not None:
            z, y, x = z[sl[0]], y[sl[1]], x[sl[2]]
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def box(self, lo, hi) -> tuple[slice, slice, slice]:
        """Index slices covering the LPS box [lo, hi] (x, y, z), clipped to the grid."""
        out = []
        for ax in (2, 1, 0):
            n = self.shape[2 - ax]
            a = int(np.floor((lo[ax] - self.origin[ax]) / self.h))
            b = int(np.ceil((hi[ax] - self.origin[ax]) / self.h)) + 1
            out.append(slice(min(max(a, 0), n), min(max(b, 0), n)))
        return tuple(out)

    def index(self, p) -> tuple[int, int, int]:
        """Nearest voxel (z, y, x) of an LPS point, clipped to the grid."""
        ijk = np.rint((np.asarray(p, float) - np.asarray(self.origin)) / self.h).astype(int)
        return tuple(int(np.clip(ijk[2 - a], 0, self.shape[a] - 1)) for a in range(3))

    def crop_origin(self, sl) -> tuple[float, float, float]:
        return tuple(float(self.origin[i] + self.h * sl[2 - i].start) for i in range(3))


def ras_to_lps(p) -> np.ndarray:
    p = np.asarray(p, float)
    return p * np.array([-1.0, -1.0, 1.0])


def _read(d: Path, key: str) -> np.ndarray:
    """Atlas map as float32 [z, y, x] in LPS index order (x and y flipped from the file's RAS-like order)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(d / ATLAS_FILES[key]))
    # the files are LPS direction diag(-1, -1, 1), origin (98, 134, -72), 1 mm: flip x and y to identity
    if tuple(np.round(img.GetDirection(), 6)) != (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0):
        raise RuntimeError(f"unexpected orientation of {ATLAS_FILES[key]}")
    a = sitk.GetArrayFromImage(img)[:, ::-1, ::-1].astype(F32) / F32(255.0)
    return np.ascontiguousarray(a)


def _atlas_origin(d: Path) -> tuple[float, float, float]:
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetFileName(str(d / ATLAS_FILES["t1"]))
    r.ReadImageInformation()
    ox, oy, oz = r.GetOrigin()
    nx, ny, _ = r.GetSize()
    return (ox - (nx - 1), oy - (ny - 1), oz)


def _resample(a: np.ndarray, src_origin, dst_origin, h: float, shape, default: float = 0.0) -> np.ndarray:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(a, F32))
    img.SetOrigin(tuple(float(v) for v in src_origin))
    ref = sitk.Image([int(shape[2]), int(shape[1]), int(shape[0])], sitk.sitkUInt8)
    ref.SetOrigin(tuple(float(v) for v in dst_origin))
    ref.SetSpacing((float(h),) * 3)
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _territories(gm, wm, tz, ty, tx) -> np.ndarray:
    par = (gm + wm) > 0.15
    best = np.full(par.shape, np.inf, F32)
    lab = np.zeros(par.shape, np.uint8)
    for side in (1.0, -1.0):
        hemi = (tx * -side) >= -0.5  # RAS x = -LPS x; right hemisphere (x_ras > 0) for side +1
        for tid, (xr, yr, zr) in _SEEDS_RAS:
            px, py, pz = -side * xr, -yr, zr
            d = (tx - F32(px)) ** 2 + (ty - F32(py)) ** 2 + (tz - F32(pz)) ** 2
            d = np.where(hemi, d, np.inf).astype(F32)
            closer = d < best
            best[closer] = d[closer]
            lab[closer] = tid
    lab[~par] = 0
    return lab


@functools.lru_cache(maxsize=2)
def load_template(h: float = 1.25) -> Template:
    from scipy import ndimage

    d = atlas_dir()
    gm, wm, t1 = (_read(d, k) for k in ("gm", "wm", "t1"))
    tot = gm + wm
    over = tot > 1.0
    gm[over] /= tot[over]
    wm[over] /= tot[over]
    o1 = _atlas_origin(d)
    # continue the bottom slice (medulla) downwards as the spinal cord in its canal
    pad = 28
    gm = np.concatenate([np.repeat(gm[:1], pad, 0), gm])
    wm = np.concatenate([np.repeat(wm[:1], pad, 0), wm])
    mask = np.concatenate([np.repeat(t1[:1] > 0, pad, 0), t1 > 0])
    o1 = (o1[0], o1[1], o1[2] - pad)
    mask = ndimage.binary_fill_holes(mask)
    for k in range(mask.shape[0]):  # no enclosed pockets per axial plane either
        mask[k] = ndimage.binary_fill_holes(mask[k])
    # the canal: at least a 6 mm radius around the cord below the foramen magnum (atlas z < -58)
    zz = o1[2] + np.arange(mask.shape[0])
    yy = o1[1] + np.arange(mask.shape[1])
    xx = o1[0] + np.arange(mask.shape[2])
    low = zz < -58.0
    cy, cx = np.argwhere(mask[pad]).mean(axis=0)  # the medulla in the atlas' bottom slice
    cord = ((xx[None, :] - xx[int(round(cx))]) ** 2 + (yy[:, None] - yy[int(round(cy))]) ** 2) < 7.5 ** 2
    mask[low] |= cord[None]
    sd1 = (ndimage.distance_transform_edt(~mask).astype(F32) - ndimage.distance_transform_edt(mask).astype(F32))
    sd1 += np.where(mask, F32(0.5), F32(-0.5))  # voxel centres -> the surface between them
    sd1 = ndimage.gaussian_filter(sd1, 0.8)
    csf1 = np.clip(mask.astype(F32) - gm - wm, 0.0, 1.0)
    # ventricles: CSF-rich voxels > 5 mm deep; the two lateral ventricles are components of their own,
    # the third and fourth ventricles are the parts of the central CSF component inside their boxes
    cand = (csf1 > 0.75) & (sd1 < -5.0)
    lab, n = ndimage.label(cand)
    vent_mask = np.zeros_like(cand)
    if n:
        flat = lab.ravel()
        size = np.bincount(flat, minlength=n + 1).astype(float)
        zi, yi, xi = np.indices(lab.shape, sparse=True)
        cx = np.bincount(flat, (xi + 0 * lab).ravel(), n + 1) / np.maximum(size, 1)
        cz = np.bincount(flat, (zi + 0 * lab).ravel(), n + 1) / np.maximum(size, 1)
        x_ras = -(o1[0] + cx)
        z_ras = o1[2] + cz
        lateral = np.flatnonzero((size >= 2000) & (np.abs(x_ras) > 6) & (np.abs(x_ras) < 26) & (z_ras > 0))
        vent_mask |= np.isin(lab, lateral[lateral > 0])
        X, Y, Z = -(o1[0] + xx)[None, None, :], -(o1[1] + yy)[None, :, None], zz[:, None, None]
        third = (np.abs(X) < 4) & (Y > -25) & (Y < 8) & (Z > -12) & (Z < 14)
        fourth = (np.abs(X) < 10) & (Y > -50) & (Y < -33) & (Z > -40) & (Z < -18)
        vent_mask |= (csf1 > 0.5) & (sd1 < -3.0) & (third | fourth)
    vent_mask = ndimage.binary_dilation(vent_mask, iterations=1) & (csf1 > 0.15)
    vent1 = csf1 * vent_mask
    del lab, cand

    h = float(h)
    shape = tuple(int(np.floor((EXTENT[a][1] - EXTENT[a][0]) / h)) + 1 for a in (2, 1, 0))
    origin = (EXTENT[0][0], EXTENT[1][0], EXTENT[2][0])
    gm_h = np.clip(_resample(gm, o1, origin, h, shape), 0, 1)
    wm_h = np.clip(_resample(wm, o1, origin, h, shape), 0, 1)
    sd_h = _resample(sd1, o1, origin, h, shape, default=60.0)
    vent_h = np.clip(_resample(vent1, o1, origin, h, shape), 0, 1)
    vent_h[sd_h > -2.0] = 0.0
    vent_near = ndimage.gaussian_filter((vent_h > 0.3).astype(F32), 4.0 / h)
    vent_near = np.clip(vent_near / max(float(vent_near.max()), 1e-6) * 4.0, 0, 1).astype(F32)
    par_smooth = ndimage.gaussian_filter(gm_h + wm_h, 1.5 / h).astype(F32)
    surf = np.argwhere(np.abs(sd_h) < 0.5 * h)
    surf = surf[:: max(1, len(surf) // 6000)]
    surface = np.asarray(origin)[None, :] + h * surf[:, ::-1].astype(float)
    arrays = dict(gm=gm_h, wm=wm_h, sd=sd_h, vent=vent_h, vent_near=vent_near, par_smooth=par_smooth,
                  surface=surface)
    for a in arrays.values():
        a.setflags(write=False)
    return Template(h=h, origin=origin, shape=shape, **arrays)


@functools.lru_cache(maxsize=2)
def territory_map(h: float = 1.25) -> np.ndarray:
    """uint8 arterial territory per voxel (0 outside the parenchyma; ids in TERRITORIES)."""
    t = load_template(h)
    tz, ty, tx = t.zyx()
    lab = _territories(t.gm, t.wm, tz, ty, tx)
    lab.setflags(write=False)
    return lab
