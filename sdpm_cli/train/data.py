"""Training data: find (image, label) cases, prepare them exactly as `segment` does, sample patches.

Each case goes through `ingest.load_study` and `preprocess.prepare` (the code path `segment` uses),
so the network trains on the same model-grid slices it will see at inference. Only brain slices are
kept, as compact arrays (image float16, labels uint8), optionally cached on disk keyed by the file
contents and the preprocessing plan, so a restart does not redo the preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sdpm_cli.dataset import Case, read_dataset
from sdpm_cli.errors import InputRejected
from sdpm_cli.labels import CLASSES

log = logging.getLogger(__name__)

# Bump when the cached arrays' meaning changes (keys also hold the plan, so plan changes are covered).
CACHE_VERSION = 2  # 2: labels outside the brain mask are background (the model can never predict there)


# One (image, label) pair: the image is a volume file or a DICOM folder, the label a NIfTI map.
TrainCase = Case


@dataclass
class CaseArrays:
    """The brain slices of one case on the model grid."""

    case: str
    x: np.ndarray  # float16 [S, H, W] in [-1, 1]
    y: np.ndarray  # uint8   [S, H, W] (0, 1 infarct, 2 hemorrhage)
    brain: np.ndarray  # uint8 [S, H, W]
    key: str  # content hash of (image, label, plan): identifies the case in headers and caches
    lost_lesion_voxels: int = 0  # model-grid lesion voxels outside the brain mask (not trained on)
    m: Optional[np.ndarray] = None  # float16 [S, K, H, W]: the conditioning channels (Prepared.condition), else None


@dataclass
class SliceSet:
    """All training (or validation) slices stacked, plus the indexes patch sampling needs."""

    x: np.ndarray  # float16 [N, H, W]
    y: np.ndarray  # uint8   [N, H, W]
    brain: np.ndarray  # uint8 [N, H, W]
    case_of_slice: np.ndarray  # int32 [N]
    cases: list[str]
    lesion_voxels: dict[int, np.ndarray] = field(default_factory=dict)  # class -> int32 [K, 3] (n, y, x)
    brain_box: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int32))  # [N, 4] y0, y1, x0, x1
    m: Optional[np.ndarray] = None  # float16 [N, K, H, W]: the conditioning channels, when the plan makes any

    @property
    def n_slices(self) -> int:
        return int(self.x.shape[0])

    @property
    def size(self) -> int:
        return int(self.x.shape[-1])


# ----------------------------------------------------------------------------- finding the cases


def find_cases(data: Path) -> list[TrainCase]:
    """Cases from an nnU-Net raw folder (imagesTr/labelsTr) or a CSV with `image,label` columns
    (sdpm_cli.dataset, the reader `sdpm evaluate --data` uses too). Images may be DICOM folders."""
    return read_dataset(Path(data), "train", what="training data", other_split_hint=False)


def split_cases(cases: Sequence[TrainCase], val_fraction: float, seed: int) -> tuple[list[TrainCase], list[TrainCase]]:
    """A seeded case-level split (slices of one patient never straddle train and validation)."""
    n = len(cases)
    if val_fraction <= 0 or n < 2:
        return list(cases), []
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5A11])).permutation(n)
    val_idx = set(order[:n_val].tolist())
    return [c for i, c in enumerate(cases) if i not in val_idx], [c for i, c in enumerate(cases) if i in val_idx]


# ----------------------------------------------------------------------------- preparing one case


def _hash_path(h: "hashlib._Hash", path: Path) -> None:
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode())
            _hash_file(h, p)
    else:
        _hash_file(h, path)


def _hash_file(h: "hashlib._Hash", path: Path) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def case_key(case: TrainCase, plan_dict: dict) -> str:
    """sha256 of the image and label contents and the preprocessing plan (not of the paths)."""
    h = hashlib.sha256()
    h.update(f"sdpm-train-cache-v{CACHE_VERSION}".encode())
    h.update(json.dumps(plan_dict, sort_keys=True).encode())
    _hash_path(h, case.image)
    h.update(b"|label|")
    _hash_file(h, case.label)
    return h.hexdigest()


def prepare_case(case: TrainCase, plan) -> CaseArrays:
    """Ingest + preprocess one case (the `segment` path) and keep its brain slices."""
    from sdpm_cli.evaluate.cases import grid_mismatch, read_labels
    from sdpm_cli.ingest import load_study
    from sdpm_cli.preprocess import label_to_model, prepare

    try:  # geometry and HU validated as for segment; the head checks are for unlabelled clinical input
        study = load_study(case.image, anatomy=False)
    except InputRejected as exc:
        raise InputRejected(f"case {case.case}: {exc}") from None
    label = read_labels(case.label, case.case, "label")
    why = grid_mismatch(label, study.image)
    if why:
        raise InputRejected(f"case {case.case}: label and image are on different grids ({why})")
    prepared = prepare(study.image, plan)
    y_all = np.asarray(label_to_model(label, prepared), dtype=np.uint8)
    n_label = int(np.count_nonzero(y_all))
    # outside the brain mask the input is -1 and predictions are masked away at inference: a lesion
    # label there (blood blurred into the skull edge) would only teach the network to paint the rim
    y_all[prepared.brain == 0] = 0
    keep = np.asarray(getattr(prepared, "brain_slices", None) if getattr(prepared, "brain_slices", None) is not None
                      else np.flatnonzero(prepared.brain.reshape(prepared.brain.shape[0], -1).any(axis=1)), dtype=int)
    lost = n_label - int(np.count_nonzero(y_all[keep]))  # outside the brain mask or on slices without brain
    cond = prepared.condition(keep)  # neighbours from the whole volume, brainless slices included, as at inference
    return CaseArrays(
        case=case.case,
        x=np.ascontiguousarray(prepared.x[keep], dtype=np.float16),
        y=np.ascontiguousarray(y_all[keep]),
        brain=np.ascontiguousarray(prepared.brain[keep], dtype=np.uint8),
        key="",
        lost_lesion_voxels=lost,
        m=None if cond is None else np.ascontiguousarray(cond, dtype=np.float16),
    )


def _atomic_savez(dest: Path, **arrays) -> None:
    """Write an npz beside `dest` and rename it in: concurrent DDP ranks never read half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part.npz", dir=dest.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_case(case: TrainCase, plan, cache_dir: Optional[Path] = None) -> CaseArrays:
    """Prepared arrays of one case, from the cache when an entry with the same content key exists."""
    key = case_key(case, plan.to_dict())
    entry = Path(cache_dir) / f"{key[:32]}.npz" if cache_dir else None
    if entry is not None and entry.is_file():
        try:
            with np.load(entry) as z:
                if str(z["key"]) == key:
                    return CaseArrays(case.case, z["x"], z["y"], z["brain"], key, int(z["lost"]), z["m"] if "m" in z else None)
        except (OSError, KeyError, ValueError):
            log.debug("cache entry %s unreadable; rebuilding", entry)
    arrays = prepare_case(case, plan)
    arrays.key = key
    if entry is not None:
        extra = {} if arrays.m is None else {"m": arrays.m}
        _atomic_savez(entry, x=arrays.x, y=arrays.y, brain=arrays.brain, key=np.array(key), lost=np.array(arrays.lost_lesion_voxels), **extra)
    return arrays


def stack_cases(cases: Sequence[CaseArrays]) -> SliceSet:
    """Concatenate cases and index their lesion voxels and brain boxes for patch sampling."""
    if not cases:
        raise InputRejected("no training slices: every case is empty after brain masking")
    x = np.concatenate([c.x for c in cases])
    with_m = [c.m is not None for c in cases]
    if any(with_m) and not all(with_m):
        raise ValueError("cases prepared with and without conditioning channels cannot be stacked")
    m = np.concatenate([c.m for c in cases]) if all(with_m) else None
    y = np.concatenate([c.y for c in cases])
    brain = np.concatenate([c.brain for c in cases])
    owner = np.concatenate([np.full(c.x.shape[0], i, np.int32) for i, c in enumerate(cases)])
    lesions = {k: np.argwhere(y == k).astype(np.int32) for k in CLASSES}
    boxes = np.zeros((x.shape[0], 4), np.int32)
    rows_any = brain.any(axis=2)  # [N, H]
    cols_any = brain.any(axis=1)  # [N, W]
    for n in range(x.shape[0]):
        r, c = np.flatnonzero(rows_any[n]), np.flatnonzero(cols_any[n])
        if r.size == 0:  # no brain on this slice: the whole grid
            boxes[n] = (0, x.shape[1] - 1, 0, x.shape[2] - 1)
        else:
            boxes[n] = (r[0], r[-1], c[0], c[-1])
    return SliceSet(x=x, y=y, brain=brain, case_of_slice=owner, cases=[c.case for c in cases],
                    lesion_voxels=lesions, brain_box=boxes, m=m)


def dataset_digest(keys: Sequence[str]) -> str:
    """One hash for a set of cases (order-independent), recorded in the model header."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


# ----------------------------------------------------------------------------- patch sampling


class PatchSampler:
    """Lesion-aware 2-D patch sampler with a seeded, checkpointable generator.

    A `lesion_fraction` of patches are centred (with jitter) on a random lesion voxel, the class
    chosen uniformly among those present so a rare class is not drowned out; the rest are centred
    uniformly inside a random slice's brain box. `patch=0` returns whole slices. Each DDP rank seeds
    its own stream from (seed, rank), so ranks draw different patches.
    """

    def __init__(self, data: SliceSet, patch: int, lesion_fraction: float, seed: int, rank: int = 0,
                 context_slices: int = 0):
        size = data.size
        # the last 2k conditioning channels are neighbouring slices (plan.context_slices = k): half the
        # patches get them in reverse order, so the network does not depend on which way a series runs
        self.context_slices = int(context_slices)
        self.data = data
        self.patch = size if patch in (0, None) or patch >= size else int(patch)
        self.lesion_fraction = float(lesion_fraction)
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(rank), 0xBA7C])))
        self._classes = [k for k, v in data.lesion_voxels.items() if len(v)]

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _centres(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng, d = self.rng, self.data
        n = rng.integers(0, d.n_slices, size=batch)
        box = d.brain_box[n]
        cy = box[:, 0] + np.floor(rng.random(batch) * (box[:, 1] - box[:, 0] + 1)).astype(np.int64)
        cx = box[:, 2] + np.floor(rng.random(batch) * (box[:, 3] - box[:, 2] + 1)).astype(np.int64)
        on_lesion = rng.random(batch) < self.lesion_fraction
        if self._classes and on_lesion.any():
            k = int(on_lesion.sum())
            cls = rng.integers(0, len(self._classes), size=k)
            picks = np.empty((k, 3), np.int64)
            for j, c in enumerate(self._classes):
                sel = cls == j
                vox = d.lesion_voxels[c]
                picks[sel] = vox[rng.integers(0, len(vox), size=int(sel.sum()))]
            jitter = rng.integers(-(self.patch // 4), self.patch // 4 + 1, size=(k, 2))
            n[on_lesion] = picks[:, 0]
            cy[on_lesion] = picks[:, 1] + jitter[:, 0]
            cx[on_lesion] = picks[:, 2] + jitter[:, 1]
        return n, cy, cx

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x float32 [B,1+K,P,P], labels uint8 [B,P,P], brain uint8 [B,P,P]); x's channels after the
        first are the conditioning channels (the plan's `condition_channels`)."""
        d, P = self.data, self.patch
        n, cy, cx = self._centres(batch)
        y0 = np.clip(cy - P // 2, 0, d.size - P)
        x0 = np.clip(cx - P // 2, 0, d.size - P)
        ar = np.arange(P)
        nn, rr, cc = n[:, None, None], (y0[:, None] + ar)[:, :, None], (x0[:, None] + ar)[:, None, :]
        x = d.x[nn, rr, cc].astype(np.float32)[:, None]
        if d.m is not None:  # advanced indices around a slice put the channel axis last: [B, P, P, K]
            x = np.concatenate([x, np.moveaxis(d.m[nn, :, rr, cc], -1, 1).astype(np.float32)], axis=1)
            k = 2 * self.context_slices
            if k:
                turn = self.rng.random(batch) < 0.5
                x[turn, -k:] = x[turn, -k:][:, ::-1]
        return x, d.y[nn, rr, cc], d.brain[nn, rr, cc]
