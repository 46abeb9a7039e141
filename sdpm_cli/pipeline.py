"""The whole chain for one study: ingest -> preprocess -> model -> postprocess -> native-grid labels.

`segment_study` is what `sdpm segment`, `sdpm evaluate --model` and batch pipelines call. A model is
loaded once (`load_model`) and can be passed to many calls.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import SimpleITK as sitk

from sdpm_cli.errors import ModelError, UsageError
from sdpm_cli.labels import CLASSES

log = logging.getLogger(__name__)

MODES = ("out", "salient", "infer", "union")


@dataclass
class LoadedModel:
    """A checkpoint ready to run: network on its device, schedule, preprocessing plan, header."""

    net: "torch.nn.Module"  # noqa: F821
    sched: object
    plan: object
    header: dict
    path: Path
    device: "torch.device"  # noqa: F821

    @property
    def name(self) -> str:
        return self.header.get("name") or self.path.name

    @property
    def sha256(self) -> str:
        return self.header.get("sha256", "")

    @property
    def lesion_filter(self) -> "LesionFilter":  # noqa: F821
        """The model's own component filter (header `postprocess.lesion_filter`; none if absent)."""
        from sdpm_cli.postprocess.components import LesionFilter

        try:
            return LesionFilter.from_dict((self.header.get("postprocess") or {}).get("lesion_filter"))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{self.path.name}: unusable postprocess settings in its header: {exc}") from None


def resolve_device(spec: str = "auto") -> tuple["torch.device", list[str]]:  # noqa: F821
    """`auto` picks CUDA when present; a CUDA request without CUDA falls back to CPU with a warning."""
    import torch

    warnings: list[str] = []
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), warnings
    if spec == "cpu":
        return torch.device("cpu"), warnings
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            warnings.append(f"{spec} requested but CUDA is not available: running on the CPU (slower)")
            return torch.device("cpu"), warnings
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"{spec} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return dev, warnings
    raise UsageError(f"unknown device '{spec}' (use auto, cpu, cuda or cuda:N)")


def load_model(model: Union[str, Path, None] = None, device: str = "auto") -> tuple[LoadedModel, list[str]]:
    """Load a checkpoint (default: the shipped model) onto a device."""
    import torch

    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.model.diffusion import sigmoid_schedule
    from sdpm_cli.model.registry import default_model_path
    from sdpm_cli.preprocess import PreprocessPlan

    dev, warnings = resolve_device(device)
    if model is None:
        path = default_model_path()
        if path is None:
            raise ModelError("no default model is installed (give --model PATH, or reinstall sdpm)")
    else:
        path = Path(model)
    net, header = load_checkpoint(path, map_location="cpu")
    net = net.to(dev).eval()
    if dev.type == "cpu":  # NHWC convolutions: 1.48x faster per call on 2 cores (benchmarks/floor.py)
        net = net.to(memory_format=torch.channels_last)
    T = int(header.get("schedule", {}).get("T", 500))
    plan = PreprocessPlan.from_dict(header["preprocess"]) if header.get("preprocess") else PreprocessPlan()
    return LoadedModel(net=net, sched=sigmoid_schedule(T), plan=plan, header=header, path=path, device=dev), warnings


@dataclass
class ClassVolume:
    name: str
    label: int
    volume_ml: float
    ci95_ml: Optional[tuple[float, float]]  # from the spread of the diffusion samples; None for `out`
    n_samples: int


@dataclass
class Segmentation:
    """Everything a caller may want to write out; arrays are on the native grid of the study."""

    labels: sitk.Image
    labels_by_mode: dict[str, sitk.Image]
    probs: np.ndarray  # float32 [C, Z, Y, X]: probability of each class (requested mode)
    volumes: dict[str, ClassVolume]
    study: object
    model: LoadedModel
    mode: str
    preset: str
    seed: int
    device: str
    n_calls_per_slice: int
    lesion_filter: dict = field(default_factory=dict)  # the component filter applied (empty: none)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def probability_image(self) -> sitk.Image:
        """Per-voxel lesion probability as a 4-D-free stack: one float32 volume per class, last axis class."""
        arr = np.moveaxis(self.probs, 0, -1)  # [Z, Y, X, C]
        img = sitk.GetImageFromArray(arr.astype(np.float32), isVector=True)
        img.CopyInformation(self.labels)
        return img


def _seed_for_study(seed: int, key: str) -> int:
    # independent of processing order in batches, so a study's mask depends only on (seed, study)
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def segment_study(
    study_or_path,
    *,
    model: Union[LoadedModel, str, Path, None] = None,
    mode: str = "union",
    preset: str = "fast",
    device: str = "auto",
    seed: int = 0,
    steps: Optional[int] = None,
    samples: Optional[int] = None,
    series_uid: Optional[str] = None,
    correct_tilt: bool = False,
    resample_gaps: bool = False,
    batch_slices: int = 8,
    lesion_filter: Optional[dict] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Segmentation:
    """Segment one study; see docs/ARCHITECTURE.md for the stages.

    `lesion_filter`: the 3-D component filter (postprocess.components); None = the model's own
    (its header's `postprocess.lesion_filter`), {} = none.
    """
    import torch

    from sdpm_cli.postprocess.components import LesionFilter, filter_class_masks

    from sdpm_cli.ingest import load_study
    from sdpm_cli.model.samplers import make_config, predict
    from sdpm_cli.preprocess import prepare, probs_to_native

    timings: dict[str, float] = {}
    warnings: list[str] = []
    t0 = time.perf_counter()
    cfg = make_config(mode=mode, preset=preset, steps=steps, samples=samples)  # validates mode and preset
    if isinstance(model, LoadedModel):
        lm = model
    else:
        lm, w = load_model(model, device)
        warnings += w
    timings["load_model_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    if hasattr(study_or_path, "image"):
        study = study_or_path
    else:
        study = load_study(study_or_path, series_uid=series_uid, correct_tilt=correct_tilt, resample_gaps=resample_gaps)
    warnings += list(study.warnings)
    timings["ingest_s"] = time.perf_counter() - t

    t = time.perf_counter()
    prepared = prepare(study.image, lm.plan)
    warnings += list(getattr(prepared, "warnings", []) or [])
    timings["preprocess_s"] = time.perf_counter() - t

    t = time.perf_counter()
    Z, H, W = prepared.x.shape
    C = len(CLASSES)
    run_modes = ("out", "salient", "infer", "union") if mode == "union" else (mode,)
    masks_model = {m: np.zeros((C, Z, H, W), dtype=np.uint8) for m in run_modes}
    prob_model = np.zeros((C, Z, H, W), dtype=np.float32)
    flt = lm.lesion_filter if lesion_filter is None else LesionFilter.from_dict(lesion_filter)
    # each sample's whole-volume mask is kept only when a 3-D filter needs it (S x the label volume:
    # ~340 MB for the paper preset on a 66-slice study); otherwise its pixel counts are enough
    sample_masks: Optional[np.ndarray] = None  # bool [S, C, Z, H, W]
    sample_counts: Optional[np.ndarray] = None  # [S, C]
    key = str(getattr(study.series, "uid", "")) or str(study_or_path)
    gen = torch.Generator(device="cpu").manual_seed(_seed_for_study(seed, key))
    slices = np.asarray(prepared.brain_slices, dtype=int)
    n_calls = 0
    with torch.inference_mode():
        for start in range(0, len(slices), batch_slices):
            idx = slices[start : start + batch_slices]
            x = torch.from_numpy(prepared.x[idx][:, None].astype(np.float32)).to(lm.device)
            brain = torch.from_numpy(prepared.brain[idx][:, None].astype(bool)).to(lm.device)
            pred = predict(lm.net, lm.sched, x, cfg, gen, brain=brain)
            n_calls = pred.n_calls
            prob_model[:, idx] = pred.prob.float().cpu().numpy().transpose(1, 0, 2, 3)
            for m in run_modes:
                masks_model[m][:, idx] = pred.masks[m].cpu().numpy().transpose(1, 0, 2, 3).astype(np.uint8)
            if flt.active:
                if sample_masks is None:
                    sample_masks = np.zeros((pred.sample_masks.shape[0], C, Z, H, W), dtype=bool)
                sample_masks[:, :, idx] = pred.sample_masks.cpu().numpy().transpose(0, 2, 1, 3, 4)
            else:
                counts = pred.sample_counts_cleaned.cpu().numpy().sum(axis=1)
                sample_counts = counts if sample_counts is None else sample_counts + counts
            if progress:
                progress(min(start + batch_slices, len(slices)), len(slices))
    timings["model_s"] = time.perf_counter() - t

    t = time.perf_counter()
    dz = float(study.image.GetSpacing()[2])
    model_voxel_ml = lm.plan.spacing_mm**2 * dz / 1000.0
    if flt.active:  # on the model grid, so the masks and every sample's mask are filtered alike
        masks_model = {m: filter_class_masks(v, flt, model_voxel_ml, dz).astype(np.uint8) for m, v in masks_model.items()}
        if sample_masks is not None:
            sample_counts = filter_class_masks(sample_masks, flt, model_voxel_ml, dz).reshape(*sample_masks.shape[:2], -1).sum(-1)
    probs_native = probs_to_native(prob_model, prepared)
    labels_by_mode = {m: _labels_to_native(masks_model[m], probs_native, prepared) for m in run_modes}
    labels = labels_by_mode[mode]
    volumes = _class_volumes(labels, sample_counts, model_voxel_ml, mode)
    timings["postprocess_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    return Segmentation(
        labels=labels,
        labels_by_mode=labels_by_mode,
        probs=probs_native,
        volumes=volumes,
        study=study,
        model=lm,
        mode=mode,
        preset=preset,
        seed=seed,
        device=str(lm.device),
        n_calls_per_slice=n_calls,
        lesion_filter=flt.to_dict() if flt.active else {},
        timings=timings,
        warnings=warnings,
    )


def _labels_to_native(mask_model: np.ndarray, probs_native: np.ndarray, prepared) -> sitk.Image:
    """Binary model-grid masks -> native label map.

    Each class mask is interpolated linearly onto the native grid and kept where >= 0.5, so lesion
    boundaries fall half-way between model pixels instead of being blocky; where two classes
    overlap, the one with the higher probability wins.
    """
    from sdpm_cli.preprocess import probs_to_native

    score = probs_to_native(mask_model.astype(np.float32), prepared)
    score += 1e-3 * probs_native  # tie-break between classes only
    best = np.argmax(score, axis=0)
    keep = np.max(score, axis=0) >= 0.5
    labels = np.where(keep, best + 1, 0).astype(np.uint8)
    img = sitk.GetImageFromArray(labels)
    img.CopyInformation(prepared.grid.reference)
    return img


def _class_volumes(labels: sitk.Image, sample_counts: Optional[np.ndarray], model_voxel_ml: float, mode: str):
    """Point volume from the native mask; 95% interval from the per-sample volumes on the model grid."""
    arr = sitk.GetArrayViewFromImage(labels)
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    per_sample = sample_counts if sample_counts is not None else np.zeros((1, len(CLASSES)))  # [S, C]
    sample_ml = per_sample * model_voxel_ml
    out: dict[str, ClassVolume] = {}
    for c, name in CLASSES.items():
        vol = float(np.count_nonzero(arr == c)) * voxel_ml
        s = sample_ml[:, c - 1]
        ci = None
        if mode != "out" and len(s) > 1:
            ci = (float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5)))
        out[name] = ClassVolume(name=name, label=c, volume_ml=vol, ci95_ml=ci, n_samples=int(len(s)))
    return out
