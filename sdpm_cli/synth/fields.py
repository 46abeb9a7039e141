"""Small numerical building blocks shared by the anatomy and lesion models.

Everything is float32 numpy on a regular canonical grid in SimpleITK index order [z, y, x]. Shapes
are described by approximate signed distances (mm, negative inside) and turned into partial-volume
fractions with a one-voxel linear ramp, so edges are anti-aliased at the model's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class Grid:
    """Axis-aligned grid of the canonical head frame (x patient-left, y posterior, z superior; mm)."""

    origin: tuple[float, float, float]  # physical (x, y, z) of voxel [0, 0, 0]
    h: float                            # isotropic spacing, mm
    shape: tuple[int, int, int]         # (nz, ny, nx)

    def axis(self, i: int) -> np.ndarray:
        """1D coordinates along x (0), y (1) or z (2)."""
        n = self.shape[2 - i]
        return (self.origin[i] + self.h * np.arange(n)).astype(F32)

    def zyx(self, sl: tuple[slice, slice, slice] | None = None):
        """Broadcastable coordinate arrays z[:,None,None], y[None,:,None], x[None,None,:] (optionally cropped)."""
        z, y, x = self.axis(2), self.axis(1), self.axis(0)
        if sl is not None:
            z, y, x = z[sl[0]], y[sl[1]], x[sl[2]]
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def box(self, lo, hi) -> tuple[slice, slice, slice]:
        """Index slices covering the physical box [lo, hi] (x, y, z), clipped to the grid."""
        out = []
        for ax in (2, 1, 0):  # z, y, x
            n = self.shape[2 - ax]
            a = int(np.floor((lo[ax] - self.origin[ax]) / self.h))
            b = int(np.ceil((hi[ax] - self.origin[ax]) / self.h)) + 1
            out.append(slice(min(max(a, 0), n), min(max(b, 0), n)))
        return tuple(out)  # type: ignore[return-value]


def sig(t):
    """Smooth step from 0 (t < -3) to 1 (t > 3), slope 1/4 at 0 like a logistic.

    Compact support on purpose: products of logistic tails underflow into float32 denormals, which
    made whole-volume arithmetic ten times slower.
    """
    u = np.multiply(t, F32(1.0 / 6.0), dtype=F32, out=np.empty(np.shape(t), F32))
    u += F32(0.5)
    np.clip(u, F32(0.0), F32(1.0), out=u)
    v = u * u
    u *= F32(-2.0)
    u += F32(3.0)
    u *= v
    return u


def bump(t):
    """Compactly supported stand-in for exp(-t^2): (1 - t^2/3)^3 for |t| < sqrt(3), else 0."""
    v = np.maximum(1.0 - np.square(np.asarray(t, F32)) / F32(3.0), 0.0)
    return (v * v * v).astype(F32, copy=False)


def soft_in(d, h: float):
    """Fraction inside for a signed distance d (mm, negative inside): linear ramp one voxel wide."""
    out = np.multiply(d, F32(-1.0 / h), dtype=F32, out=np.empty(np.shape(d), F32))
    out += F32(0.5)
    return np.clip(out, F32(0.0), F32(1.0), out=out)


def rot_matrix(pitch_deg: float, yaw_deg: float, roll_deg: float) -> np.ndarray:
    """R = Rz(yaw) @ Ry(roll) @ Rx(pitch): pitch nods about x, roll tilts about y, yaw turns about z."""
    p, yw, r = np.deg2rad([pitch_deg, yaw_deg, roll_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
    rz = np.array([[np.cos(yw), -np.sin(yw), 0], [np.sin(yw), np.cos(yw), 0], [0, 0, 1]])
    return rz @ ry @ rx


def ellipsoid(grid: Grid, c, r, rot: np.ndarray | None = None, pad: float = 4.0):
    """Approximate signed distance (first order, mm) to an ellipsoid, computed only in its bounding box.

    Returns (slices, d) with d shaped like the cropped grid; rot maps local axes to canonical axes.
    """
    c = np.asarray(c, float)
    r = np.asarray(r, float)
    ext = np.full(3, r.max() + pad) if rot is not None else r + pad
    sl = grid.box(c - ext, c + ext)
    z, y, x = grid.zyx(sl)
    dx, dy, dz = x - F32(c[0]), y - F32(c[1]), z - F32(c[2])
    if rot is not None:
        m = np.asarray(rot, F32).T  # canonical -> local
        lx = m[0, 0] * dx + m[0, 1] * dy + m[0, 2] * dz
        ly = m[1, 0] * dx + m[1, 1] * dy + m[1, 2] * dz
        lz = m[2, 0] * dx + m[2, 1] * dy + m[2, 2] * dz
    else:
        lx, ly, lz = np.broadcast_arrays(dx, dy, dz)
    q = (lx / F32(r[0])) ** 2 + (ly / F32(r[1])) ** 2 + (lz / F32(r[2])) ** 2
    g = 2.0 * np.sqrt((lx / F32(r[0] ** 2)) ** 2 + (ly / F32(r[1] ** 2)) ** 2 + (lz / F32(r[2] ** 2)) ** 2)
    # first-order distance near the surface; far inside fall back to a radius-scaled value
    d = np.where(g > 1e-3, (q - 1.0) / np.maximum(g, F32(1e-3)), -F32(r.min()))
    d = np.minimum(d, (np.sqrt(q) - 1.0) * F32(r.max()))
    return sl, d.astype(F32, copy=False)


def paste_max(field: np.ndarray, sl, values: np.ndarray) -> None:
    """field[sl] = max(field[sl], values) (union of fractions)."""
    np.maximum(field[sl], values, out=field[sl])


def paste_min(field: np.ndarray, sl, values: np.ndarray) -> None:
    np.minimum(field[sl], values, out=field[sl])


def random_waves(rng: np.random.Generator, n: int, wavelength: float):
    """Directions, phases and amplitude for an isotropic random-wave field (variance 1)."""
    k = rng.normal(size=(n, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= 2 * np.pi / wavelength
    phase = rng.uniform(0, 2 * np.pi, n)
    return k.astype(F32), phase.astype(F32), F32(np.sqrt(2.0 / n))


def eval_waves(waves, px, py, pz):
    """Sum of cosines at points (px, py, pz) (broadcastable arrays)."""
    k, phase, amp = waves
    out = None
    for (kx, ky, kz), ph in zip(k, phase):
        term = np.cos(kx * px + ky * py + kz * pz + ph)
        out = term if out is None else out + term
    return (out * amp).astype(F32, copy=False)


def coarse_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> np.ndarray:
    """Smooth noise (variance ~1) varying over `cell` voxels: random lattice values, trilinear upsampling."""
    from scipy import ndimage

    cshape = tuple(int(np.ceil(s / cell)) + 2 for s in shape)
    c = rng.standard_normal(cshape).astype(F32)
    c = ndimage.gaussian_filter(c, 0.7)
    c /= c.std() + 1e-6
    coords = [np.arange(s, dtype=F32) / F32(cell) + 0.5 for s in shape]
    # separable linear interpolation, one axis at a time (cheap compared to map_coordinates)
    out = c
    for ax, co in enumerate(coords):
        i0 = np.floor(co).astype(int)
        w = (co - i0).astype(F32)
        a = np.take(out, i0, axis=ax)
        b = np.take(out, i0 + 1, axis=ax)
        wshape = [1] * out.ndim
        wshape[ax] = -1
        w = w.reshape(wshape)
        out = a * (1 - w) + b * w
    return out.astype(F32, copy=False)


def upsample2(a: np.ndarray, axes=(0, 1, 2), shape=None) -> np.ndarray:
    """Linear x2 upsampling where coarse sample j sits on fine sample 2j (crop to `shape`)."""
    out = a
    for ax in axes:
        n = out.shape[ax]
        new_shape = list(out.shape)
        new_shape[ax] = 2 * n - 1
        res = np.empty(new_shape, F32)
        idx_even = [slice(None)] * out.ndim
        idx_even[ax] = slice(0, None, 2)
        res[tuple(idx_even)] = out
        idx_odd = [slice(None)] * out.ndim
        idx_odd[ax] = slice(1, None, 2)
        lo = [slice(None)] * out.ndim
        lo[ax] = slice(0, -1)
        hi = [slice(None)] * out.ndim
        hi[ax] = slice(1, None)
        res[tuple(idx_odd)] = 0.5 * (out[tuple(lo)] + out[tuple(hi)])
        out = res
    if shape is not None:
        pad = [(0, max(0, s - o)) for s, o in zip(shape, out.shape)]
        if any(p[1] for p in pad):
            out = np.pad(out, pad, mode="edge")
        out = out[tuple(slice(0, s) for s in shape)]
    return out
