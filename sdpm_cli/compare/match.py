"""Lesion matching between two registered scans: components that overlap are the same lesion.

Each scan's lesions are its own 26-connected components (as `postprocess.lesions` numbers them);
the follow-up's component ids are carried onto the baseline grid through the registration
(nearest neighbour, so ids survive). Same-class components that share at least `min_overlap`
voxels are linked, and each connected group of links is one matched lesion — a bleed that split
or two that merged stay one entry, with every id listed. Unlinked follow-up lesions are `new`,
unlinked baseline lesions `resolved`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class LesionGroup:
    label: int
    status: str  # matched | new | resolved
    baseline_ids: tuple[int, ...]
    followup_ids: tuple[int, ...]
    overlap_voxels: int  # on the baseline grid


def match_lesions(baseline_ids: np.ndarray, followup_ids_on_baseline: np.ndarray, baseline_label: Mapping[int, int],
                  followup_label: Mapping[int, int], min_overlap: int = 1) -> list[LesionGroup]:
    """Group lesions by overlap. The arrays hold lesion ids (0 = none) on one grid; the mappings give
    each id's class label. Groups are ordered matched, new, resolved, then by class and first id."""
    a = np.asarray(baseline_ids).ravel()
    b = np.asarray(followup_ids_on_baseline).ravel()
    both = (a > 0) & (b > 0)
    pairs, counts = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True) if both.any() else (np.zeros((2, 0), int), [])
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    overlap: dict[tuple[int, int], int] = {}
    for (i, j), n in zip(pairs.T.tolist(), list(counts)):
        if n >= min_overlap and baseline_label.get(i) == followup_label.get(j):
            overlap[(i, j)] = int(n)
            parent[find(("b", i))] = find(("f", j))
    groups: dict[tuple, list] = {}
    for i in baseline_label:
        groups.setdefault(find(("b", i)), []).append(("b", i))
    for j in followup_label:
        groups.setdefault(find(("f", j)), []).append(("f", j))
    out = []
    for members in groups.values():
        bi = tuple(sorted(i for s, i in members if s == "b"))
        fj = tuple(sorted(j for s, j in members if s == "f"))
        label = baseline_label[bi[0]] if bi else followup_label[fj[0]]
        status = "matched" if bi and fj else ("new" if fj else "resolved")
        n = sum(v for (i, j), v in overlap.items() if i in bi and j in fj)
        out.append(LesionGroup(label, status, bi, fj, n))
    order = {"matched": 0, "new": 1, "resolved": 2}
    return sorted(out, key=lambda g: (order[g.status], g.label, (g.baseline_ids or g.followup_ids)[0]))
