"""Small numerical helpers of family B (its own, independent of family A's `fields.py`)."""

from __future__ import annotations

import numpy as np

F32 = np.float32


def ramp(d, h: float) -> np.ndarray:
    """Fraction inside for a signed distance d (mm, negative inside): linear over one voxel."""
    out = np.asarray(d, F32) * F32(-1.0 / h) + F32(0.5)
    return np.clip(out, 0.0, 1.0, out=out).astype(F32, copy=False)


def band(d, lo: float, hi, h: float) -> np.ndarray:
    """Fraction of a voxel with lo < d < hi (hi may be an array)."""
    return np.clip(np.minimum(ramp(lo - np.asarray(d, F32), h), ramp(np.asarray(d, F32) - hi, h)), 0.0, 1.0)


def rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Rotation (degrees): pitch about the left-right axis, roll about the antero-posterior, yaw about the vertical."""
    a, b, c = np.deg2rad([pitch, roll, yaw])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


def bspline_weights(n_out: int, n_ctrl: int) -> np.ndarray:
    """[n_out, n_ctrl] cubic B-spline interpolation weights spreading n_ctrl nodes over n_out samples."""
    t = np.linspace(0.0, n_ctrl - 3.0, n_out) + 1.0  # nodes 1 .. n_ctrl-2 span the output
    k = np.arange(n_ctrl)[None, :]
    u = np.abs(t[:, None] - k)
    w = np.where(u < 1, 2 / 3 - u ** 2 + u ** 3 / 2, np.where(u < 2, (2 - u) ** 3 / 6, 0.0))
    return w.astype(F32)


def smooth_field(rng: np.random.Generator, shape, n_ctrl, scale: float = 1.0) -> np.ndarray:
    """A smooth random field (unit variance x scale) on `shape`, from a coarse lattice of random nodes."""
    n_ctrl = tuple(int(max(4, c)) for c in n_ctrl)
    c = rng.standard_normal(n_ctrl).astype(F32)
    wz, wy, wx = (bspline_weights(int(s), int(n)) for s, n in zip(shape, n_ctrl))
    out = np.einsum("ia,abc->ibc", wz, c, optimize=True)
    out = np.einsum("jb,ibc->ijc", wy, out, optimize=True)
    out = np.einsum("kc,ijc->ijk", wx, out, optimize=True)
    # white nodes: the variance at a sample is the product over axes of its summed squared weights
    norm = np.prod([np.sqrt(np.mean(np.sum(w.astype(float) ** 2, axis=1))) for w in (wz, wy, wx)])
    out *= F32(scale / norm)
    return out.astype(F32, copy=False)


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def paint(hu: np.ndarray, sl, frac: np.ndarray, value) -> None:
    """hu[sl] = hu[sl] * (1 - frac) + frac * value (in place)."""
    sub = hu[sl]
    sub += frac * (np.asarray(value, F32) - sub)


def ellipsoid_sd(z, y, x, c, r, rot: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid with centre c (x, y, z), radii r and axes rot."""
    dx, dy, dz = x - F32(c[0]), y - F32(c[1]), z - F32(c[2])
    if rot is not None:
        m = np.asarray(rot, F32).T
        dx, dy, dz = (m[i, 0] * dx + m[i, 1] * dy + m[i, 2] * dz for i in range(3))
    q = np.sqrt((dx / F32(r[0])) ** 2 + (dy / F32(r[1])) ** 2 + (dz / F32(r[2])) ** 2)
    return ((q - 1.0) * F32(min(r))).astype(F32)


def capsule_sd(z, y, x, a, b, r: float) -> np.ndarray:
    """Signed distance to a capsule (segment a-b, points x, y, z, radius r)."""
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    ab = b - a
    L2 = float(ab @ ab)
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / F32(L2)
    t = np.clip(t, 0.0, 1.0)
    d = np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2)
    return (d - F32(r)).astype(F32)
