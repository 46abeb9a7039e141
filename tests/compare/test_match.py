"""Lesion matching by overlap (pure function on id arrays)."""

from __future__ import annotations

import numpy as np

from sdpm_cli.compare.match import match_lesions


def test_groups_matched_split_new_resolved_and_class_mismatch():
    a = np.zeros((4, 10, 10), int)
    b = np.zeros_like(a)
    a[1, 1:4, 1:4] = 1  # baseline lesion 1 (hemorrhage) ...
    b[1, 2:5, 2:5] = 1  # ... overlaps follow-up 1
    b[1, 0:2, 0:2] = 2  # ... and follow-up 2 (a split): one matched group, both ids
    a[2, 6:9, 6:9] = 2  # baseline 2 vanished: resolved
    b[3, 6:9, 1:3] = 3  # follow-up 3 touches nothing: new
    a[3, 1:3, 6:9] = 3  # baseline 3 is an infarct, follow-up 4 a hemorrhage at the same place: not the same lesion
    b[3, 1:3, 6:9] = 4
    groups = match_lesions(a, b, {1: 2, 2: 2, 3: 1}, {1: 2, 2: 2, 3: 2, 4: 2})
    by = {(g.status, g.baseline_ids, g.followup_ids) for g in groups}
    assert ("matched", (1,), (1, 2)) in by
    assert ("resolved", (2,), ()) in by and ("resolved", (3,), ()) in by
    assert ("new", (), (3,)) in by and ("new", (), (4,)) in by
    assert len(groups) == 5
    matched = next(g for g in groups if g.status == "matched")
    assert matched.overlap_voxels == int(((a == 1) & (b > 0) & (b <= 2)).sum())


def test_min_overlap_rejects_a_touch():
    a = np.zeros((1, 5, 5), int)
    b = np.zeros_like(a)
    a[0, 0:3, 0:3] = 1
    b[0, 2:5, 2:5] = 1  # one voxel in common
    assert [g.status for g in match_lesions(a, b, {1: 2}, {1: 2}, min_overlap=2)] == ["new", "resolved"]
    assert [g.status for g in match_lesions(a, b, {1: 2}, {1: 2})] == ["matched"]
