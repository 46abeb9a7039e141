"""Drop isolated lesion pixels: the paper's frozen all-ones convolution.

A (2r+1) x (2r+1) all-ones kernel counts the lesion pixels around each pixel (itself included); a
lesion pixel whose count is 1 has no other lesion pixel within r (Chebyshev distance) and is a
speckle, not a lesion. Works slice by slice on the last two axes, for torch or numpy masks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def neighbour_counts(mask: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Lesion pixels within `radius` of each pixel, itself included (int32, same shape)."""
    shape = mask.shape
    m = mask.reshape(-1, 1, *shape[-2:]).to(torch.float32)
    k = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1, dtype=torch.float32, device=m.device)
    return F.conv2d(m, k, padding=radius).round().to(torch.int32).reshape(shape)


def remove_isolated(mask, radius: int = 3):
    """The mask without lesion pixels that have no other lesion pixel within `radius`."""
    if radius < 1:
        raise ValueError("cleanup radius must be >= 1")
    is_numpy = isinstance(mask, np.ndarray)
    m = torch.from_numpy(np.ascontiguousarray(mask)) if is_numpy else mask
    if m.dim() < 2:
        raise ValueError("cleanup needs a mask with at least two (row, column) axes")
    if m.numel() == 0:
        return mask.copy() if is_numpy else mask.clone()
    lesion = m.bool()
    keep = lesion & (neighbour_counts(lesion, radius) >= 2)
    if is_numpy:
        return keep.numpy().astype(mask.dtype, copy=False)
    return keep if mask.dtype == torch.bool else keep.to(mask.dtype)
