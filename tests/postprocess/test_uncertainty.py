"""The calibrated volume interval (postprocess.uncertainty): closed forms, containment, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdpm_cli.postprocess.uncertainty import (
    ClassCalibration,
    VolumeCalibration,
    band_voxels,
    calibrate_class,
    conformal_quantiles,
    coverage,
    low_confidence,
)


def test_conformal_ranks_are_the_finite_sample_ones():
    r = np.arange(1, 40, dtype=float) - 20.0  # 39 residuals -19..19
    # level 0.9, n 39: upper rank ceil(40 * 0.95) = 38 -> 18; lower rank floor(40 * 0.05) = 2 -> -18
    assert conformal_quantiles(r, 0.9) == (-18.0, 18.0)
    # 0.95: ranks 39 and 1 -> the extremes
    assert conformal_quantiles(r, 0.95) == (-19.0, 19.0)
    # too few for the level: the rank falls outside 1..n, no finite interval can promise it
    lo, hi = conformal_quantiles([0.1, 0.2, 0.3], 0.95)
    assert lo == -math.inf and hi == math.inf
    with pytest.raises(ValueError, match="too few"):
        calibrate_class([1.0, 2.0], [1.0, 2.0], [0.0, 0.0], level=0.95)


def test_interval_contains_its_point_volume_always():
    rng = np.random.default_rng(0)
    for _ in range(500):
        cal = ClassCalibration(q_lo=float(rng.normal()), q_hi=float(rng.normal()), n=50)  # even "wrong-signed" quantiles
        v, band = float(rng.choice([0.0, rng.exponential(20)])), float(rng.exponential(3))
        lo, hi = cal.interval(v, band)
        assert 0.0 <= lo <= v <= hi


def test_interval_widens_with_the_uncertain_band_and_with_volume():
    cal = ClassCalibration(q_lo=-1.0, q_hi=1.5, n=50, rel=0.1, floor_ml=0.5)
    w = lambda v, b: np.subtract(*cal.interval(v, b)[::-1])  # noqa: E731
    assert w(10.0, 5.0) > w(10.0, 1.0) > w(10.0, 0.0)
    assert w(40.0, 1.0) > w(10.0, 1.0)
    # closed form: scale = 1 + 0.1 * 10 + 0.5 = 2.5 -> [10 - 2.5, 10 + 3.75]
    assert cal.interval(10.0, 1.0) == pytest.approx((7.5, 13.75))
    assert cal.interval(0.0, 0.0) == pytest.approx((0.0, 0.75))  # a missed lesion still has an upper bound


def _studies(rng, n):
    """Exchangeable synthetic studies: a multiplicative and an additive error, larger where the band is."""
    truth = rng.exponential(20.0, n) * (rng.random(n) < 0.8)
    band = rng.exponential(2.0, n) + 0.05 * truth
    pred = np.maximum(0.0, truth * rng.normal(1.0, 0.15, n) + rng.normal(0.0, 1.0, n) * band)
    return pred, truth, band


def test_calibrated_coverage_is_what_it_claims_and_a_broken_calibration_fails():
    rng = np.random.default_rng(1)
    good, broken = [], []
    for _ in range(60):
        cal_set, test_set = _studies(rng, 80), _studies(rng, 400)
        cal = calibrate_class(*cal_set, level=0.95)
        good.append(coverage(cal, *test_set))
        # broken on purpose: quantiles of the 80% level (or the sample spread alone) under-cover
        bad = calibrate_class(*cal_set, level=0.8)
        broken.append(coverage(bad, *test_set))
    assert 0.93 <= np.mean(good) <= 0.985, np.mean(good)
    assert np.mean(broken) < 0.9  # the tolerance above would catch it


def test_calibration_round_trips_through_a_header():
    cal = VolumeCalibration(level=0.95, source="validation phantoms",
                            classes={"out": {"infarct": ClassCalibration(-1.0, 2.0, 44), "hemorrhage": ClassCalibration(-0.5, 1.0, 44)}})
    back = VolumeCalibration.from_dict(cal.to_dict())
    assert back == cal and back.get("out", "hemorrhage").q_hi == 1.0 and back.get("union", "infarct") is None
    assert VolumeCalibration.from_dict(None) is None
    with pytest.raises(ValueError):
        VolumeCalibration.from_dict({**cal.to_dict(), "level": 1.5})


def test_band_and_low_confidence():
    p = np.array([0.0, 0.19, 0.2, 0.5, 0.79, 0.8, 1.0])
    assert band_voxels(p).tolist() == [False, False, True, True, True, False, False]
    assert low_confidence(10.0, (8.0, 12.0), 0.9) is False
    assert low_confidence(10.0, (2.0, 25.0), 0.9) is True  # wider than the volume itself
    assert low_confidence(10.0, (8.0, 12.0), 0.55) is True  # the model is not sure of its own voxels
