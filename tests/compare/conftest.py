"""Synthetic scan pairs built at test time (sdpm_cli.compare.phantom) and the tiny random model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sdpm_cli.compare.phantom import PairSpec, default_case, make_pair

MOVE = dict(rotation_deg=(3.0, -2.0, 4.0), shift_mm=(5.0, -4.0, 3.0))  # a few degrees, a few millimetres


@pytest.fixture(scope="session")
def head():
    """One small family A phantom with a hemorrhage (128 matrix, 5 mm)."""
    return default_case(3)


@pytest.fixture(scope="session")
def grown_pair(head):
    return make_pair(head, PairSpec(**MOVE, grow_mm=4.0, seed=1))


@pytest.fixture(scope="session")
def stable_pair(head):
    return make_pair(head, PairSpec(**MOVE, grow_mm=0.0, seed=2))


def write_dicom(image, meta: dict, folder: Path, patient: int, uid_offset: int = 0) -> Path:
    """The scan as a DICOM series; `patient` sets PatientID/PatientName, `uid_offset` new UIDs."""
    from sdpm_cli.synth.writers import write_dicom_series

    m = copy.deepcopy(meta)
    m["seed"] = int(m["seed"]) + uid_offset
    return write_dicom_series(image, m, folder, case_number=patient)


@pytest.fixture(scope="module")
def dicom_pairs(tmp_path_factory, head, grown_pair) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pairs")
    return {
        "baseline": write_dicom(grown_pair.baseline, head.meta, root / "baseline", patient=7),
        "followup": write_dicom(grown_pair.followup, head.meta, root / "followup", patient=7, uid_offset=10**6),
        "other_patient": write_dicom(grown_pair.followup, head.meta, root / "other", patient=8, uid_offset=2 * 10**6),
    }
