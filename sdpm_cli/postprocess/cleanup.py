"""Drop isolated lesion pixels: the paper's frozen all-ones convolution.

A (2r+1) x (2r+1) all-ones kernel counts the lesion pixels around each pixel (itself included); a
lesion pixel whose count is 1 has no other lesion pixel within r (Chebyshev distance) and is a
speckle, not a lesion. Works slice by slice on the last two axes, for torch or numpy masks; numpy
masks are counted with numpy/scipy (exact integer sums, the same counts as the convolution), so a
run of `out` through the ONNX companion never imports torch.
"""

from __future__ import annotations

import numpy as np


def neighbour_counts(mask, radius: int = 3):
    """Lesion pixels within `radius` of each pixel, itself included (int32, same shape, same kind)."""
    if isinstance(mask, np.ndarray):
        from scipy.ndimage import correlate1d

        ones = np.ones(2 * radius + 1, dtype=np.int32)
        rows = correlate1d(mask.astype(np.int32), ones, axis=-1, mode="constant", cval=0)
        return correlate1d(rows, ones, axis=-2, mode="constant", cval=0)
    import torch
    import torch.nn.functional as F

    shape = mask.shape
    m = mask.reshape(-1, 1, *shape[-2:]).to(torch.float32)
    k = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1, dtype=torch.float32, device=m.device)
    return F.conv2d(m, k, padding=radius).round().to(torch.int32).reshape(shape)


def remove_isolated(mask, radius: int = 3):
    """The mask without lesion pixels that have no other lesion pixel within `radius`."""
    if radius < 1:
        raise ValueError("cleanup radius must be >= 1")
    if mask.ndim < 2:
        raise ValueError("cleanup needs a mask with at least two (row, column) axes")
    if isinstance(mask, np.ndarray):
        if mask.size == 0:
            return mask.copy()
        lesion = mask.astype(bool, copy=False)
        keep = lesion & (neighbour_counts(lesion, radius) >= 2)
        return keep.astype(mask.dtype, copy=False)
    import torch

    if mask.numel() == 0:
        return mask.clone()
    lesion = mask.bool()
    keep = lesion & (neighbour_counts(lesion, radius) >= 2)
    return keep if mask.dtype == torch.bool else keep.to(mask.dtype)


def lesion_masks(prob, brain=None, threshold: float = 0.5, cleanup_radius: int | None = 3):
    """The masks of probabilities `prob` (torch or numpy): prob >= threshold, inside `brain` (any
    shape that broadcasts), then isolated pixels dropped (`cleanup_radius` None: kept). The one rule
    for every mode's final and per-sample masks, on torch (samplers) and numpy (ONNX `out`) alike."""
    m = prob >= threshold
    if brain is not None:
        m = m & brain
    return remove_isolated(m, cleanup_radius) if cleanup_radius is not None else m
