"""The stochastic modes' noise without torch (model.noise): the numbers torch's CPU generator draws."""

from __future__ import annotations

import numpy as np
import pytest

from sdpm_cli.model.noise import NoiseStream, SliceNoise, mix_seed


@pytest.mark.parametrize("seed", [0, 5, 123456789012345, 2**62 + 7])
def test_a_stream_draws_what_torch_draws(seed):
    """The same uniform doubles exactly and the same normals up to the last bits of log/cos/sin, in
    the order the samplers draw them (a salient plan's double, then whole images; sizes that are
    and are not multiples of 16)."""
    torch = pytest.importorskip("torch")
    ours, gen = NoiseStream(seed), torch.Generator().manual_seed(seed)
    assert ours.uniform() == torch.rand(1, 1, generator=gen, dtype=torch.float64).item()
    for shape in [(1, 160, 160), (1, 97, 101), (2, 16), (1, 17)]:
        want = torch.randn(shape, generator=gen, dtype=torch.float32).numpy()
        got = ours.normal(shape)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.abs(got - want).max() < 2e-6, shape
    assert ours.uniform() == torch.rand(1, 1, generator=gen, dtype=torch.float64).item()  # still in step


def test_streams_are_standard_normal_and_deterministic():
    a = NoiseStream(11).normal((1, 200, 200))
    assert np.array_equal(a, NoiseStream(11).normal((1, 200, 200)))
    assert not np.array_equal(a, NoiseStream(12).normal((1, 200, 200)))
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    with pytest.raises(ValueError):
        NoiseStream(0).normal((3, 5))  # torch draws fewer than 16 numbers another way


def test_slice_noise_gives_each_slice_and_repeat_its_own_stream():
    n = SliceNoise([7, 8])
    rows = n.randn([(0, 0), (1, 0), (0, 1)], (1, 8, 8))
    assert rows.shape == (3, 1, 8, 8)
    assert np.array_equal(rows[0], NoiseStream(mix_seed(7, 0)).normal((1, 8, 8)))
    assert np.array_equal(rows[2], NoiseStream(mix_seed(7, 1)).normal((1, 8, 8)))
    # a stream continues where it stopped, however the rows were grouped
    nxt = n.randn([(1, 0)], (1, 8, 8))[0]
    s = NoiseStream(mix_seed(8, 0))
    s.normal((1, 8, 8))
    assert np.array_equal(nxt, s.normal((1, 8, 8)))
    assert SliceNoise.from_seed(3, 2).seeds == [mix_seed(3, 0), mix_seed(3, 1)]
