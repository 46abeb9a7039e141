"""Small, fast phantoms for the synth tests (coarser anatomy and matrix than the clinical default)."""

from __future__ import annotations

import functools

import pytest

from sdpm_cli.synth import SynthConfig, generate_case


def small_cfg(**kw) -> SynthConfig:
    base = dict(matrix=128, anatomy_mm=1.5, thicknesses_mm=(5.0,), thickness_weights=(1.0,))
    base.update(kw)
    return SynthConfig(**base)


@functools.lru_cache(maxsize=None)
def cached_case(seed: int, lesion: str = "both", thickness: float = 5.0, with_tissue: bool = False,
                domain: str = "randomised", plan: tuple[str, ...] | None = None):
    return generate_case(seed, small_cfg(lesion=lesion, thicknesses_mm=(thickness,), with_tissue=with_tissue, domain=domain),
                         plan=plan)


@pytest.fixture
def case_factory():
    return cached_case
