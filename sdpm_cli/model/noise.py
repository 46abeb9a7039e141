"""The stochastic modes' noise, without torch: one Mersenne-Twister stream per (slice, repeat).

A stream seeded with s draws exactly the numbers `torch.Generator("cpu").manual_seed(s)` draws -
the same MT19937 state (seeded with the low 32 bits), the same 24-bit uniform floats paired by
Box-Muller in blocks of 16 for `torch.randn` (float32, at least 16 numbers: the last block of a
size that is not a multiple of 16 is redrawn, as torch does), the same 53-bit uniform doubles for
`torch.rand(dtype=float64)` - up to the last bits of log/cos/sin (at most a few 1e-7, measured in
tests/model/test_noise.py). So the noise of every release before this module, drawn with torch, is
this noise: stored results and the volume calibration stay valid, a run does not depend on which
runtime (torch or ONNX Runtime) computes its network calls, and a future torch that changed its
generator would not change our samples.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

_MASK32 = 0xFFFFFFFF
_N = 624  # MT19937 state words


def mix_seed(*parts: object) -> int:
    """A 63-bit seed from any labels (study key, mode, slice index, repeat): stable across runs."""
    return int.from_bytes(hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()[:8], "little") & ((1 << 63) - 1)


def _mt_key(seed: int) -> np.ndarray:
    """MT19937's init_genrand(seed & 0xffffffff): the state torch's CPU generator starts from."""
    key = np.empty(_N, dtype=np.uint32)
    v = seed & _MASK32
    key[0] = v
    for i in range(1, _N):
        v = (1812433253 * (v ^ (v >> 30)) + i) & _MASK32
        key[i] = v
    return key


class NoiseStream:
    """One seeded stream: `normal(shape)` is `torch.randn(shape)`, `uniform()` is `torch.rand((), dtype=float64)`."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._bits = np.random.MT19937()
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": _mt_key(self.seed), "pos": _N}}

    def _words(self, n: int) -> np.ndarray:
        return self._bits.random_raw(n).astype(np.uint32)

    def uniform(self) -> float:
        """A double in [0, 1) from 53 bits of two 32-bit words (high word first)."""
        hi, lo = (int(v) for v in self._words(2))
        return (((hi << 32) | lo) & ((1 << 53) - 1)) * 2.0 ** -53

    def _uniform24(self, n: int) -> np.ndarray:
        return (self._words(n) & 0xFFFFFF).astype(np.float32) * np.float32(2.0 ** -24)

    @staticmethod
    def _box_muller16(u: np.ndarray) -> np.ndarray:
        """Blocks of 16 uniforms [n, 16] -> 16 normals each: (u[j], u[j+8]) -> (r cos th, r sin th)."""
        r = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - u[:, :8]))
        th = np.float32(2.0 * np.pi) * u[:, 8:]
        return np.concatenate([r * np.cos(th), r * np.sin(th)], axis=1)

    def normal(self, shape: Sequence[int]) -> np.ndarray:
        """Standard normal float32 of `shape` (at least 16 numbers)."""
        size = int(np.prod(shape))
        if size < 16:
            raise ValueError("a noise draw needs at least 16 numbers (torch draws smaller ones another way)")
        out = self._uniform24(size)
        whole = size - size % 16
        out[:whole] = self._box_muller16(out[:whole].reshape(-1, 16)).ravel()
        if whole != size:  # torch redraws the last 16 numbers as one more block
            out[size - 16:] = self._box_muller16(self._uniform24(16).reshape(1, 16)).ravel()
        return out.reshape(tuple(shape))


class SliceNoise:
    """One noise stream per (slice of the batch, repeat), created on first use from the slice's seed.

    A stream is consumed in the same order (salient: plan, then one image per timestep; infer:
    start, then one image per jump) however the rows are batched or chunked, so a slice's answer
    does not depend on which slices share its batch: what lets the pipeline run the stochastic
    modes only on gated-in slices and still give them, bit for bit, an ungated run's answer.
    """

    def __init__(self, slice_seeds: Sequence[int]) -> None:
        self.seeds = [int(v) for v in slice_seeds]
        self._streams: dict[tuple[int, int], NoiseStream] = {}

    @classmethod
    def from_seed(cls, seed: int, n_slices: int) -> "SliceNoise":
        """Slice seeds derived from one seed (a batch given without per-slice seeds)."""
        return cls([mix_seed(seed, b) for b in range(n_slices)])

    def __len__(self) -> int:
        return len(self.seeds)

    def stream(self, b: int, s: int) -> NoiseStream:
        if (b, s) not in self._streams:
            self._streams[(b, s)] = NoiseStream(mix_seed(self.seeds[b], s))
        return self._streams[(b, s)]

    def randn(self, rows: Sequence[tuple[int, int]], shape: Sequence[int]) -> np.ndarray:
        """[len(rows), *shape] standard normal float32, row r from stream rows[r] = (slice, repeat)."""
        return np.stack([self.stream(b, s).normal(shape) for b, s in rows])
