"""Brain window: HU -> [-1, 1], the intensity range the network sees."""

from __future__ import annotations

import numpy as np


def apply_window(hu: np.ndarray, level: float, width: float, out: np.ndarray | None = None) -> np.ndarray:
    """Map [level - width/2, level + width/2] HU linearly onto [-1, 1], clipping outside (float32)."""
    lo = level - width / 2.0
    res = np.subtract(hu, np.float32(lo), out=out, dtype=np.float32, casting="unsafe")
    res *= np.float32(2.0 / width)
    res -= np.float32(1.0)
    np.clip(res, -1.0, 1.0, out=res)
    return res


def undo_window(x: np.ndarray, level: float, width: float) -> np.ndarray:
    """The inverse of `apply_window` inside the window (HU outside it come back clipped to its edges)."""
    return (np.asarray(x, dtype=np.float32) + np.float32(1.0)) * np.float32(width / 2.0) + np.float32(level - width / 2.0)
