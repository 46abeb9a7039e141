"""The all-ones-kernel cleanup of isolated lesion pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve2d

from sdpm_cli.postprocess.cleanup import neighbour_counts, remove_isolated


def test_isolated_pixel_dropped_pairs_and_blobs_kept():
    m = np.zeros((20, 20), dtype=bool)
    m[2, 2] = True  # alone
    m[10, 10] = m[10, 13] = True  # a pair 3 apart: each has a neighbour within r = 3
    m[15:18, 2:6] = True  # a blob
    m[2, 15] = m[6, 15] = True  # 4 apart: both isolated at r = 3
    out = remove_isolated(m, radius=3)
    expect = m.copy()
    expect[2, 2] = expect[2, 15] = expect[6, 15] = False
    assert out.dtype == bool and np.array_equal(out, expect)
    # a larger radius keeps the far pair
    assert remove_isolated(m, radius=4)[2, 15]


def test_batched_classes_are_independent_slices():
    m = np.zeros((2, 2, 9, 9), dtype=bool)
    m[0, 0, 4, 4] = True  # isolated in class 0 ...
    m[0, 1, 4, 5] = True  # ... even though class 1 has a pixel next to it
    m[1, 0, 0, 0] = m[1, 0, 0, 1] = True  # a pair at the corner (zero padding outside)
    out = remove_isolated(m)
    assert out.dtype == bool and out.shape == m.shape
    assert not out[0].any() and out[1, 0, 0, 0] and out[1, 0, 0, 1]


def test_counts_and_idempotence_and_input_checks():
    m = np.ones((1, 7, 7), dtype=bool)
    c = neighbour_counts(m, 3)
    assert c[0, 3, 3] == 49 and c[0, 0, 0] == 16
    u8 = (np.random.default_rng(0).random((3, 30, 30)) > 0.9).astype(np.uint8)
    once = remove_isolated(u8)
    # a kept pixel's neighbour is kept too (the relation is symmetric), so one pass is enough
    assert once.dtype == np.uint8 and np.array_equal(remove_isolated(once), once)
    assert np.all(once <= u8)
    with pytest.raises(ValueError):
        remove_isolated(u8, radius=0)


def test_counts_equal_the_all_ones_convolution():
    """The separable scipy counts are the paper's (2r+1)^2 all-ones convolution with zero padding,
    slice by slice, and the mask keeps exactly the lesion pixels counted at least twice."""
    rng = np.random.default_rng(3)
    for shape, r in (((4, 2, 40, 37), 3), ((3, 17, 29), 1), ((6, 6), 5)):
        m = rng.random(shape) > 0.92
        flat = m.reshape(-1, *shape[-2:]).astype(np.int64)
        kernel = np.ones((2 * r + 1, 2 * r + 1), dtype=np.int64)
        conv = np.stack([convolve2d(s, kernel, mode="same") for s in flat]).reshape(shape)
        assert np.array_equal(neighbour_counts(m, r), conv)
        assert np.array_equal(remove_isolated(m, r), m & (conv >= 2))
