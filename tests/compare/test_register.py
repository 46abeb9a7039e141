"""Rigid registration: the known motion is recovered, and a failed fit is refused (exit 3)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.compare.phantom import target_error_mm
from sdpm_cli.compare.register import RegistrationRules, check_registration, register_rigid, resample_to
from sdpm_cli.errors import InputRejected


def test_round_trip_recovers_the_motion(grown_pair):
    reg = register_rigid(grown_pair.baseline, grown_pair.followup)
    # mean target error over a 60 mm ball: far below the 1.8 mm pixel and 5 mm slice
    assert target_error_mm(reg.transform, grown_pair.motion, grown_pair.baseline) < 0.5
    assert reg.angle_deg == pytest.approx(np.degrees(np.arccos((np.trace(
        np.reshape(grown_pair.motion.GetMatrix(), (3, 3))) - 1) / 2)), abs=0.5)
    assert reg.passed and reg.brain_dice > reg.brain_dice_before
    # the follow-up truth carried back onto the baseline grid overlays the baseline truth where it did not grow
    back = sitk.GetArrayFromImage(resample_to(grown_pair.followup_label, grown_pair.baseline_label, reg.transform,
                                              labels=True))
    base = sitk.GetArrayFromImage(grown_pair.baseline_label) == 2
    assert (back[base] == 2).mean() > 0.95
    d = reg.to_dict()
    assert d["passed"] and d["brain_dice"] >= RegistrationRules().min_brain_dice and d["mutual_information"] > 0


def test_an_upside_down_head_is_refused_not_misregistered(grown_pair):
    flipped = sitk.Flip(grown_pair.followup, [False, False, True], flipAboutOrigin=False)  # superior <-> inferior
    flipped.CopyInformation(grown_pair.followup)
    reg = register_rigid(grown_pair.baseline, flipped)
    assert not reg.passed
    with pytest.raises(InputRejected, match="registration failed: brain-mask Dice"):
        check_registration(reg)


def test_no_brain_is_refused(grown_pair):
    air = sitk.Image(grown_pair.followup.GetSize(), sitk.sitkInt16) - 1000
    air.CopyInformation(grown_pair.followup)
    with pytest.raises(InputRejected, match="no brain"):
        register_rigid(grown_pair.baseline, air)
