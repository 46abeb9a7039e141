"""Change intervals and expansion calls (pure functions)."""

from __future__ import annotations

import pytest

from sdpm_cli.compare.change import (ExpansionRules, VolumeChange, call_at_least, change_pct, difference_interval,
                                     hemorrhage_expansion, infarct_growth, new_blood)

R = ExpansionRules()


def test_difference_interval_is_the_conservative_minkowski_difference():
    assert difference_interval((10.0, 14.0), (20.0, 30.0)) == (6.0, 20.0)
    assert difference_interval((10.0, 14.0), (20.0, 30.0), k=1.5) == (20.0 - 21.0, 30.0 - 15.0)
    assert difference_interval(None, (1.0, 2.0)) is None
    # it holds the true change whenever both volumes' intervals hold theirs
    b_true, f_true = 13.0, 21.0
    lo, hi = difference_interval((10.0, 14.0), (20.0, 30.0))
    assert lo <= f_true - b_true <= hi


def test_calls_say_uncertain_when_the_interval_straddles_the_threshold():
    assert call_at_least(8.0, (7.0, 9.0), 6.0) == (True, "yes")
    assert call_at_least(8.0, (5.0, 9.0), 6.0) == (True, "uncertain")
    assert call_at_least(2.0, (1.0, 5.9), 6.0) == (False, "no")
    assert call_at_least(6.0, None, 6.0) == (True, "yes")  # no interval: the point decides
    assert call_at_least(0.0, None, 0.0, strict=True) == (False, "no")


def test_hemorrhage_expansion_by_millilitres_or_percent():
    grown_ml = VolumeChange(40.0, 40.0 + R.hemorrhage_ml, None, None)  # +6 mL but only +15%
    assert hemorrhage_expansion(grown_ml, R).call == "yes"
    grown_pct = VolumeChange(6.0, 6.0 * (1 + R.hemorrhage_rel) + 0.1, None, None)  # +35% but +2 mL
    assert grown_pct.change_ml < R.hemorrhage_ml and hemorrhage_expansion(grown_pct, R).call == "yes"
    stable = VolumeChange(20.0, 21.0, None, None)
    assert not hemorrhage_expansion(stable, R).point and hemorrhage_expansion(stable, R).call == "no"
    # intervals: wholly above -> yes; the change's interval across 6 mL and the % one across 33% -> uncertain
    assert hemorrhage_expansion(VolumeChange(20.0, 30.0, (19.0, 21.0), (29.0, 31.0)), R).call == "yes"
    wide = hemorrhage_expansion(VolumeChange(20.0, 27.0, (15.0, 25.0), (22.0, 32.0)), R)
    assert wide.point and wide.call == "uncertain"
    assert hemorrhage_expansion(VolumeChange(20.0, 21.0, (19.5, 20.5), (20.5, 21.5)), R).call == "no"


def test_new_bleed_has_no_percentage_and_is_judged_in_millilitres():
    assert change_pct(0.0, 5.0) is None and change_pct(10.0, 15.0) == pytest.approx(50.0)
    assert hemorrhage_expansion(VolumeChange(0.0, 3.0, None, None), R).call == "no"  # 3 mL new: below 6 mL
    assert hemorrhage_expansion(VolumeChange(0.0, 7.0, None, None), R).call == "yes"
    assert new_blood(0.0, 1.2, "ivh").call == "yes" and new_blood(0.5, 1.2, "ivh").call == "no"
    assert new_blood(0.0, 0.0, "ivh").call == "no"


def test_infarct_growth_is_strict():
    assert infarct_growth(VolumeChange(10.0, 10.0, None, None), R).call == "no"
    assert infarct_growth(VolumeChange(10.0, 14.0, (8.0, 12.0), (12.0, 16.0)), R).call == "uncertain"
    assert infarct_growth(VolumeChange(10.0, 30.0, (8.0, 12.0), (25.0, 35.0)), R).call == "yes"
