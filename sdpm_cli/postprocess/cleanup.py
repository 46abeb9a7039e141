"""Drop isolated lesion pixels: the paper's frozen all-ones convolution.

A (2r+1) x (2r+1) all-ones kernel counts the lesion pixels around each pixel (itself included); a
lesion pixel whose count is 1 has no other lesion pixel within r (Chebyshev distance) and is a
speckle, not a lesion. Works slice by slice on the last two axes of numpy masks (the samplers are
numpy); the counts are two separable scipy passes, exact integer sums equal to the convolution.
"""

from __future__ import annotations

import numpy as np


def neighbour_counts(mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """Lesion pixels within `radius` of each pixel, itself included (int32, same shape)."""
    from scipy.ndimage import correlate1d

    ones = np.ones(2 * radius + 1, dtype=np.int32)
    rows = correlate1d(np.asarray(mask).astype(np.int32), ones, axis=-1, mode="constant", cval=0)
    return correlate1d(rows, ones, axis=-2, mode="constant", cval=0)


def remove_isolated(mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """The mask without lesion pixels that have no other lesion pixel within `radius`."""
    if radius < 1:
        raise ValueError("cleanup radius must be >= 1")
    if mask.ndim < 2:
        raise ValueError("cleanup needs a mask with at least two (row, column) axes")
    if mask.size == 0:
        return mask.copy()
    lesion = mask.astype(bool, copy=False)
    keep = lesion & (neighbour_counts(lesion, radius) >= 2)
    return keep.astype(mask.dtype, copy=False)


def lesion_masks(prob: np.ndarray, brain=None, threshold: float = 0.5, cleanup_radius: int | None = 3) -> np.ndarray:
    """The masks of probabilities `prob`: prob >= threshold, inside `brain` (any shape that
    broadcasts), then isolated pixels dropped (`cleanup_radius` None: kept). The one rule for every
    mode's final and per-sample masks."""
    m = prob >= threshold
    if brain is not None:
        m = m & brain
    return remove_isolated(m, cleanup_radius) if cleanup_radius is not None else m
