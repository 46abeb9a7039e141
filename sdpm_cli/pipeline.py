"""The whole chain for one study: ingest -> preprocess -> model -> postprocess -> native-grid labels.

`segment_study` is what `sdpm segment`, `sdpm evaluate --model` and batch pipelines call. A model is
loaded once (`load_model`) and can be passed to many calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Union

import numpy as np
import SimpleITK as sitk

from sdpm_cli.errors import ModelError, UsageError
from sdpm_cli.ingest.rules import IngestOptions
from sdpm_cli.labels import CLASSES, voxel_volume_ml
from sdpm_cli.modes import DEFAULT_MODE, MODES, UNION_PARTS
from sdpm_cli.preprocess.orientation import ORIENTATIONS, anatomy_may_judge

if TYPE_CHECKING:
    from sdpm_cli.preprocess.prepare import NativeProbs

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A checkpoint ready to run: network on its device, schedule, preprocessing plan, header.

    Opened on the CPU with its ONNX companion (`model.onnx_net`), it holds the graphs and no torch
    network (`net` None, `device` "cpu") until a run needs torch (bf16): `require_torch` loads the
    checkpoint then, so one LoadedModel serves every precision, and an fp32 run on the CPU - any
    mode - never imports torch. The schedule is numpy maths from the header either way.
    """

    net: "torch.nn.Module | None"  # noqa: F821
    sched: object
    plan: object
    header: dict
    path: Path
    device: "torch.device | str"  # noqa: F821
    graphs: "Graphs | None" = None  # noqa: F821
    device_spec: str = "auto"

    def require_torch(self) -> list[str]:
        """Load the torch network if this model was opened without it; returns device warnings."""
        if self.net is not None:
            return []
        net, header, dev, warnings = _load_torch(self.path, self.device_spec)
        self.net, self.device = net, dev
        return warnings

    def network(self, precision: str):
        """The `samplers.Network` for a run at this precision: the ONNX companion for fp32 on the
        CPU where there is one (no torch), else the torch module (loaded now if it was not)."""
        if self.graphs is not None and precision == "fp32" and str(self.device) == "cpu":
            return self.graphs.network
        from sdpm_cli.model.runtime import TorchNetwork

        self.require_torch()  # cpu or a device torch already resolved: no new warnings
        return TorchNetwork(self.net, self.device, precision)

    @property
    def T(self) -> int:
        """Diffusion steps of the model's schedule (from the header: known without torch)."""
        return _schedule_steps(self.header)

    @property
    def name(self) -> str:
        return self.header.get("name") or self.path.name

    @property
    def sha256(self) -> str:
        return self.header.get("sha256", "")

    @property
    def validation(self) -> "Validation":  # noqa: F821
        """What the model's makers say it may be used for (header `validation`): its caveat is a
        warning wherever the model is loaded and part of every report - a research model's volume
        must never travel without it."""
        from sdpm_cli.model.registry import Validation

        return Validation.from_header(self.header)

    @property
    def volume_calibration(self) -> "VolumeCalibration | None":  # noqa: F821
        """The calibrated volume error model (header `postprocess.volume_calibration`; None if absent)."""
        from sdpm_cli.postprocess.uncertainty import VolumeCalibration

        try:
            return VolumeCalibration.from_dict((self.header.get("postprocess") or {}).get("volume_calibration"))
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelError(f"{self.path.name}: unusable volume calibration in its header: {exc}") from None

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


def _model_path(model: Union[str, Path, None]) -> Path:
    from sdpm_cli.model.registry import default_model_path

    if model is not None:
        return Path(model)
    path = default_model_path()
    if path is None:
        raise ModelError("no default model is installed (give --model PATH, or reinstall sdpm)")
    return path


def _plan(header: dict, cond_channels: int, name: str):
    from sdpm_cli.preprocess import PreprocessPlan

    plan = PreprocessPlan.from_dict(header["preprocess"]) if header.get("preprocess") else PreprocessPlan()
    if plan.condition_channels != cond_channels:
        raise ModelError(f"{name}: its network takes {cond_channels} conditioning channel(s) but its "
                         f"preprocessing plan makes {plan.condition_channels}")
    return plan


def _schedule_steps(header: dict) -> int:
    return int(header.get("schedule", {}).get("T", 500))


def _schedule(header: dict):
    from sdpm_cli.model.diffusion import sigmoid_schedule

    return sigmoid_schedule(_schedule_steps(header))


def _load_torch(path: Path, device: str):
    """(network on its device, header, device, warnings); torch's threads follow `--threads`."""
    import torch

    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.threads import bound_threads

    if bound_threads():
        torch.set_num_threads(bound_threads())
    dev, warnings = resolve_device(device)
    net, header = load_checkpoint(path, map_location="cpu")
    net = net.to(dev).eval()
    if dev.type == "cpu":  # NHWC convolutions: 1.48x faster per call on 2 cores (benchmarks/floor.py)
        net = net.to(memory_format=torch.channels_last)
    return net, header, dev, warnings


def _cpu_without_asking_torch(device: str) -> bool:
    """Whether `device` means the CPU, known without importing torch: `cpu`, or `auto` on a Linux
    machine with no NVIDIA driver (torch finds CUDA only through it). Elsewhere torch decides."""
    import sys

    spec = (device or "auto").lower()
    return spec == "cpu" or (spec == "auto" and sys.platform.startswith("linux")
                             and not Path("/proc/driver/nvidia").exists())


def load_model(model: Union[str, Path, None] = None, device: str = "auto", *,
               graphs: bool = False) -> tuple[LoadedModel, list[str]]:
    """Load a checkpoint (default: the shipped model) onto a device.

    `graphs`: the caller runs in fp32; on the CPU, a checkpoint with a valid ONNX companion is then
    opened through it, and torch is imported only if a run asks for bf16 (1.8 s of start-up on 2
    cores).
    """
    path = _model_path(model)
    if graphs and _cpu_without_asking_torch(device):
        from sdpm_cli.model.onnx_net import load_graphs
        from sdpm_cli.threads import cpu_threads

        opened, why = load_graphs(path, cpu_threads())
        if opened is not None:
            plan = _plan(opened.header, opened.cond_channels, path.name)
            lm = LoadedModel(net=None, sched=_schedule(opened.header), plan=plan, header=opened.header, path=path,
                             device="cpu", graphs=opened, device_spec=device)
            return lm, _caveat_warning(lm)
        log.info("the network runs on torch: %s", why)
    net, header, dev, warnings = _load_torch(path, device)
    plan = _plan(header, net.cfg.cond_channels, path.name)
    lm = LoadedModel(net=net, sched=_schedule(header), plan=plan, header=header, path=path, device=dev,
                     device_spec=device)
    return lm, warnings + _caveat_warning(lm)


def _caveat_warning(lm: LoadedModel) -> list[str]:
    """The model's own caveat as a load warning (LoadedModel.validation), or none."""
    caveat = lm.validation.caveat
    return [f"model {lm.name}: {caveat}"] if caveat else []


@dataclass
class ClassVolume:
    """One class's volume with its interval (postprocess.uncertainty)."""

    name: str
    label: int
    volume_ml: float
    # interval for the TRUE volume at `level` (calibrated error model, contains volume_ml), or None
    # when the model carries no calibration for this mode
    ci95_ml: Optional[tuple[float, float]]
    n_samples: int
    band_ml: float = 0.0  # volume with class probability in the uncertain band (model grid)
    sample_range_ml: Optional[tuple[float, float]] = None  # min-max of the diffusion samples (sampler noise only)
    level: Optional[float] = None
    low_confidence: bool = False


@dataclass
class Segmentation:
    """Everything a caller may want to write out; arrays are on the native grid of the study."""

    labels: sitk.Image
    labels_by_mode: dict[str, sitk.Image]
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
    volumes_by_mode: dict[str, dict[str, ClassVolume]] = field(default_factory=dict)  # every mode computed
    interval_source: str = ""  # what the intervals were calibrated on ("" = not calibrated)
    # model-grid slices the stochastic modes ran on (gating; all brain slices with --no-gating), of
    stochastic_slices: int = 0
    brain_slices: int = 0
    # the gate's settings (InferenceConfig.gate_dict; the slices it chose are counted above); {} for `out`
    gating: dict = field(default_factory=dict)
    # the skull-based intracranial mask on the study grid (uint8), when preprocessing made one there
    brain: Optional[sitk.Image] = field(default=None, repr=False)
    # the native probabilities (preprocess.NativeProbs), resampled from the model grid slice by slice
    # on first read (the report's lesion rows read their own slices, --probabilities all of them): a
    # study that only wants its mask and volumes never pays for the 512 x 512 float volumes
    probs: Optional[NativeProbs] = field(default=None, repr=False)
    # the anatomy's verdict on the header's orientation (preprocess.orientation; {} = not checked)
    orientation: dict = field(default_factory=dict)
    network_runtime: str = "torch"  # or "onnxruntime": the network through the model's ONNX companion
    # reported infarcts as dark as CSF (postprocess.darkness; each also a warning): possibly old
    dark_infarcts: list = field(default_factory=list)

    def probability_image(self) -> sitk.Image:
        """Per-voxel lesion probability as a 4-D-free stack: one float32 volume per class, last axis class."""
        arr = np.moveaxis(np.asarray(self.probs), 0, -1)  # [Z, Y, X, C]
        img = sitk.GetImageFromArray(arr.astype(np.float32), isVector=True)
        img.CopyInformation(self.labels)
        return img


PRECISIONS = ("fp32", "bf16")


def _study_key(study) -> str:
    """What a study's noise is keyed on: its SeriesInstanceUID, else (a volume file, or an API caller's
    Study) a hash of its geometry and voxels - never a path or an object's address, so the same
    images give the same masks in any process, under any file name."""
    uid = str(getattr(study.series, "uid", "") or "")
    if uid:
        return uid
    img = study.image
    h = hashlib.sha256(repr((img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection())).encode())
    h.update(np.ascontiguousarray(sitk.GetArrayViewFromImage(img)).tobytes())
    return "content:" + h.hexdigest()[:32]


def _flag_domain(study, flag: str) -> None:
    """Set an out-of-domain flag (ingest.anatomy.DOMAIN_FLAGS) on a study that carries the checks."""
    if isinstance(getattr(study, "domain", None), dict):
        study.domain[flag] = True


def _seed_for_study(seed: int, key: str) -> int:
    # independent of processing order in batches, so a study's mask depends only on (seed, study)
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class SegmentOptions:
    """How one study is segmented (the same for segment, batch, serve, evaluate and compare).

    `lesion_filter`: the 3-D component filter (postprocess.components) as its dict; None = the model's
    own (its header's `postprocess.lesion_filter`), {} = none. `skull_stripped`: the NIfTI is
    brain-extracted (also detected); `brain_mask`: a binary NIfTI on the image grid used instead of
    the skull-based mask (one study only). `orientation`: "anatomy" shows the network a head whose
    header is wrong about its orientation upright (preprocess.orientation), "header" believes the
    header. `ingest`: series choice and the corrections allowed."""

    mode: str = DEFAULT_MODE
    preset: str = "fast"
    seed: int = 0
    steps: Optional[int] = None
    samples: Optional[int] = None
    gating: bool = True
    precision: str = "fp32"
    skull_stripped: bool = False
    brain_mask: Optional[Path] = None
    lesion_filter: Optional[Mapping] = None
    orientation: str = "anatomy"
    ingest: IngestOptions = field(default_factory=IngestOptions)

    def check(self) -> None:
        """Usage errors before any work: an unknown mode, preset or precision."""
        from sdpm_cli.model.inference import PRESETS

        if self.mode not in MODES:
            raise UsageError(f"unknown mode '{self.mode}' (choose from {', '.join(MODES)})")
        if self.preset not in PRESETS:
            raise UsageError(f"unknown preset '{self.preset}' (choose from {', '.join(PRESETS)})")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision '{self.precision}' (choose from {', '.join(PRECISIONS)})")
        if self.orientation not in ORIENTATIONS:
            raise UsageError(f"unknown orientation '{self.orientation}' (choose from {', '.join(ORIENTATIONS)})")

    def with_(self, **changes) -> "SegmentOptions":
        """A copy with some fields changed (ingest fields - series_uid, correct_tilt, resample_gaps,
        refuse_lossy - are accepted by name too); an unknown name is a TypeError."""
        ingest_names = {f.name for f in dataclasses.fields(IngestOptions)}
        ing = {k: changes.pop(k) for k in list(changes) if k in ingest_names}
        out = dataclasses.replace(self, **changes)
        return dataclasses.replace(out, ingest=dataclasses.replace(out.ingest, **ing)) if ing else out


def segment_study(
    study_or_path,
    *,
    model: Union[LoadedModel, str, Path, None] = None,
    options: Optional[SegmentOptions] = None,
    device: str = "auto",
    sampler_overrides: Optional[dict] = None,
    batch_slices: int = 8,
    progress: Optional[Callable[[int, int], None]] = None,
    **changes,
) -> Segmentation:
    """Segment one study; see docs/ARCHITECTURE.md for the stages.

    `options` says how (SegmentOptions; default its defaults); keyword `changes` are SegmentOptions
    fields replaced for this call (`segment_study(study, model=lm, mode="out", seed=1)`).
    `device` is used only when `model` is not already a LoadedModel.
    """
    from sdpm_cli.ingest import load_study
    from sdpm_cli.model.inference import make_config
    from sdpm_cli.postprocess.components import LesionFilter, filter_class_masks
    from sdpm_cli.preprocess import prepare
    from sdpm_cli.preprocess.prepare import NativeProbs

    o = (options or SegmentOptions()).with_(**changes)
    o.check()  # before any work
    mode, preset, seed, precision, brain_mask = o.mode, o.preset, o.seed, o.precision, o.brain_mask
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t0 = time.perf_counter()
    # sampler_overrides: InferenceConfig fields for research (e.g. the gate's threshold and area)
    cfg = make_config(mode=mode, preset=preset, steps=o.steps, samples=o.samples, gate=o.gating,
                      **(sampler_overrides or {}))  # validates the fields
    if isinstance(model, LoadedModel):
        lm = model
    else:
        lm, w = load_model(model, device, graphs=precision == "fp32")
        warnings += w
    timings["load_model_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    if hasattr(study_or_path, "image"):
        study = study_or_path
    else:
        study = load_study(study_or_path, options=o.ingest, skull_stripped=o.skull_stripped)
    warnings += list(study.warnings)
    given_brain = getattr(study, "brain", None)  # skull-stripped input: its foreground
    if brain_mask is not None:
        from sdpm_cli.ingest.anatomy import read_brain_mask

        given_brain = read_brain_mask(brain_mask, study.image)
        _flag_domain(study, "user_brain_mask")
        warnings.append(f"brain mask from the user ({Path(brain_mask).name}): the skull-based extraction was not used; "
                        "lesions are segmented inside this mask only")
    timings["ingest_s"] = time.perf_counter() - t

    t = time.perf_counter()
    orientation = o.orientation if anatomy_may_judge(study) else "header"
    prepared = prepare(study.image, lm.plan, brain=given_brain, orientation=orientation)
    warnings += list(getattr(prepared, "warnings", []) or [])
    if prepared.orientation is not None and prepared.orientation.turned:
        _flag_domain(study, "header_orientation_wrong")
    timings["preprocess_s"] = time.perf_counter() - t

    t = time.perf_counter()
    run_modes = MODES if mode == "union" else (mode,)
    flt = lm.lesion_filter if o.lesion_filter is None else LesionFilter.from_dict(dict(o.lesion_filter))
    key = _study_key(study)
    acc = _run_model(lm, prepared, cfg, run_modes, seed, key, keep_sample_masks=flt.active,
                     batch_slices=batch_slices, progress=progress, precision=precision, keep_mode_probs=flt.judges_peaks)
    masks_model, prob_model, sample_masks, sample_counts = acc.masks, acc.prob, acc.sample_masks, acc.sample_counts
    band_model = {m: v.sum(axis=1) for m, v in acc.band.items()}
    n_calls = acc.n_calls
    timings["model_s"] = time.perf_counter() - t

    t = time.perf_counter()
    dz = prepared.model_dz_mm  # a slab's thickness for a thin series
    model_voxel_ml = lm.plan.spacing_mm**2 * dz / 1000.0
    if flt.active:  # on the model grid, so the masks and every sample's mask are filtered alike
        by_mode = acc.mode_probs or {}
        mirror = _mirror_context(prepared) if flt.judges_mirror else None
        masks_model = {m: filter_class_masks(v, flt, model_voxel_ml, dz, probs=by_mode.get(m), mirror=mirror
                                             ).astype(np.uint8) for m, v in masks_model.items()}
        if sample_masks is not None:  # a sample's lesion is judged by its mode's probability
            sample_counts = filter_class_masks(sample_masks, flt, model_voxel_ml, dz, probs=by_mode.get(mode), mirror=mirror
                                               ).reshape(*sample_masks.shape[:2], -1).sum(-1)
        if mirror is not None and mirror.tried and mirror.line is None:
            warnings.append("no mid-sagittal line could be fitted to this brain: the lesion filter's mirror criterion was not applied")
    inside = None if given_brain is None else np.asarray(given_brain) > 0

    labels_by_mode = _labels_by_mode_native(masks_model, prepared)
    if inside is not None:  # a given brain mask (user, skull-stripped) bounds the lesions on the native grid
        labels_by_mode = {m: _mask_labels(v, inside) for m, v in labels_by_mode.items()}
    labels = labels_by_mode[mode]
    calib = lm.volume_calibration
    calibrated = calib is not None and all(calib.get(mode, name) is not None for name in CLASSES.values())
    volumes_by_mode = {
        m: _class_volumes(labels_by_mode[m], sample_counts if m == mode else None, model_voxel_ml, m,
                          band_model[m] * model_voxel_ml, calib)
        for m in run_modes
    }
    volumes = volumes_by_mode[mode]
    if not calibrated:
        warnings.append(f"this model carries no calibrated volume interval for mode '{mode}': volumes are given without one")
    # the intracranial mask `prepare` made, for what judges lesions against it (location classes,
    # the darkness check): one mask per study; a thin series read as slabs gets its slab's mask on
    # every source slice (169 of 170 phantom lesions keep their class, benchmarks/accuracy/thin_location.py;
    # computed per thin slice instead it was most of a thin study's report: 5.9 s on 259 slices)
    brain_img = (prepared.set_source_geometry(sitk.GetImageFromArray(
        prepared.brain_native if prepared.slabs is None else prepared.slabs.expand(prepared.brain_native)))
        if given_brain is None else None)
    dark = (_dark_infarcts(labels, study.image, brain_img if inside is None else inside)
            if volumes["infarct"].volume_ml > 0 else [])
    warnings += [d.warning() for d in dark]
    timings["postprocess_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    return Segmentation(
        labels=labels,
        labels_by_mode=labels_by_mode,
        probs=NativeProbs(prob_model, prepared, inside),
        volumes=volumes,
        study=study,
        model=lm,
        mode=mode,
        preset=preset,
        seed=seed,
        device=str(lm.device),
        network_runtime=acc.network_runtime,
        n_calls_per_slice=n_calls,
        lesion_filter=flt.to_dict() if flt.active else {},
        timings=timings,
        warnings=warnings,
        volumes_by_mode=volumes_by_mode,
        interval_source=calib.source if calibrated else "",
        stochastic_slices=len(acc.stochastic_slices),
        brain_slices=len(prepared.brain_slices),
        gating={} if mode == "out" else cfg.gate_dict(),
        orientation=prepared.orientation.to_dict() if prepared.orientation is not None else {},
        brain=brain_img,
        dark_infarcts=[d.to_dict() for d in dark],
    )


def _dark_infarcts(labels: sitk.Image, image_hu: sitk.Image, brain) -> list:
    """The reported infarcts as dark as CSF (postprocess.darkness): each gets a warning. Views, not
    copies, of the study's volumes (a thin study holds 60 million voxels); called only when an
    infarct is reported, so the midline fit costs nothing otherwise."""
    from sdpm_cli.postprocess.darkness import dark_infarcts, study_midline

    if brain is None:
        return []
    lab = sitk.GetArrayViewFromImage(labels)
    b = brain if isinstance(brain, np.ndarray) else sitk.GetArrayViewFromImage(brain)
    hu = sitk.GetArrayViewFromImage(image_hu)
    sx, sy = labels.GetSpacing()[:2]
    line = study_midline(hu, b, (sy, sx))
    return dark_infarcts(lab, hu, b, voxel_volume_ml(labels), pixel_mm=(sy, sx), line=line)


@dataclass
class _ModelAccumulator:
    """What the network gives on the model grid, slice by slice (written per slice, so a slice that is
    run twice - `out` first, then every mode when gated in - is counted once)."""

    masks: dict[str, np.ndarray]  # mode -> uint8 [C, Z, H, W]
    prob: np.ndarray  # float32 [C, Z, H, W] of the requested mode
    band: dict[str, np.ndarray]  # mode -> [C, Z] pixels in the uncertain band
    sample_masks: Optional[np.ndarray]  # bool [S, C, Z, H, W] when a 3-D filter needs them
    sample_counts: Optional[np.ndarray]  # [S, C] otherwise
    n_calls: int
    stochastic_slices: list[int]
    mode_probs: Optional[dict[str, np.ndarray]] = None  # mode -> float32 [C, Z, H, W] when the filter judges peaks
    network_runtime: str = ""  # what ran the calls: "onnxruntime" or "torch" ("onnxruntime+torch" before 2026-12-07)


def gate_slices(prob_out: np.ndarray, brain_slices, threshold: float, min_pixels: int, margin: int,
                margin_threshold: float = 0.0) -> list[int]:
    """Brain slices where a stochastic mode could find a lesion: `out`'s probability [C, Z, H, W]
    (already zero outside the brain) reaches `threshold` in at least `min_pixels` pixels of the slice
    (any class), or lies within `margin` slices of such a slice and reaches `margin_threshold` there
    over the same area (0: every slice of the margin)."""
    def area(p: float) -> np.ndarray:
        return (prob_out >= p).any(axis=0).reshape(prob_out.shape[1], -1).sum(axis=1)

    need = max(1, min_pixels)
    hit = np.flatnonzero(area(threshold) >= need)
    near = {int(z) + d for z in hit for d in range(-margin, margin + 1)}
    if margin_threshold > 0.0:
        raised = set(np.flatnonzero(area(margin_threshold) >= need).tolist())
        near = {z for z in near if z in raised}
    return [int(z) for z in brain_slices if int(z) in near]


def _run_model(lm: LoadedModel, prepared, cfg, run_modes: tuple[str, ...], seed: int, key: str, *,
               keep_sample_masks: bool, batch_slices: int, progress=None, precision: str = "fp32",
               keep_mode_probs: bool = False) -> _ModelAccumulator:
    """Run the network over the brain slices. Stochastic modes with gating: `out` on every brain slice
    first, then every mode only on the slices `gate_slices` picks (their `out` part taken from the
    first pass, not recomputed); elsewhere each mode (and each of its samples) takes `out`'s answer.
    Noise comes per (mode, slice), so a gated-in slice gets the same answer as in an ungated run."""
    import dataclasses

    from sdpm_cli.model.inference import calls_per_slice
    from sdpm_cli.postprocess.uncertainty import band_voxels

    used: set[str] = set()  # the runtime(s) that ran a call: what the report says
    Z, H, W = prepared.x.shape
    C = len(CLASSES)
    mode = cfg.mode
    brain_slices = np.asarray(prepared.brain_slices, dtype=int)
    study_seed = _seed_for_study(seed, key)
    S = 1 if mode == "out" else (max(cfg.salient_samples, cfg.infer_samples) if mode == "union"
                                 else cfg.salient_samples if mode == "salient" else cfg.infer_samples)
    mode_probs = {m: np.zeros((C, Z, H, W), dtype=np.float32) for m in run_modes} if keep_mode_probs else None
    acc = _ModelAccumulator(
        masks={m: np.zeros((C, Z, H, W), dtype=np.uint8) for m in run_modes},
        prob=mode_probs[mode] if mode_probs else np.zeros((C, Z, H, W), dtype=np.float32),  # one array, not two
        band={m: np.zeros((C, Z), dtype=np.int64) for m in run_modes},
        sample_masks=np.zeros((S, C, Z, H, W), dtype=bool) if keep_sample_masks else None,
        sample_counts=None, n_calls=0, stochastic_slices=[],
        mode_probs=mode_probs,
    )
    counts = np.zeros((S, C, Z), dtype=np.int64)
    gated = mode != "out" and cfg.gate

    def predict_batch(idx: np.ndarray, c, modes: tuple[str, ...]) -> tuple[dict, dict, np.ndarray]:
        """(probability, cleaned mask) per mode of `modes` [B, C, H, W] and the per-sample masks
        [S', B, C, H, W] of c.mode, as numpy, for the slices `idx`."""
        from sdpm_cli.model.noise import SliceNoise, mix_seed
        from sdpm_cli.model.samplers import predict

        net = lm.network(precision)
        used.add(net.name)
        noise = {m: SliceNoise([mix_seed(study_seed, m, int(z)) for z in idx]) for m in ("salient", "infer")}
        # pass 2 of a gated run: acc.prob still holds pass 1's `out` on these slices (each batch
        # reads its own slices before overwriting them), so `out` is not computed again
        known = acc.prob[:, idx].transpose(1, 0, 2, 3) if gated and c.mode != "out" else None
        pred = predict(net, lm.sched, prepared.x[idx][:, None], c, noise, brain=prepared.brain[idx][:, None],
                       cond=prepared.condition(idx), out_prob=known)
        return ({m: pred.probs[m] for m in modes}, {m: pred.masks[m] for m in modes}, pred.sample_masks)

    def run(slices: np.ndarray, c, modes: tuple[str, ...], as_modes: tuple[str, ...], done: int, total: int) -> None:
        """Predict `slices` with config c; write its result for each of `modes`, and `out`'s answer
        for each of `as_modes` (the modes gated out on these slices)."""
        for start in range(0, len(slices), batch_slices):
            idx = slices[start : start + batch_slices]
            probs, masks, per = predict_batch(idx, c, tuple(dict.fromkeys(modes + (("out",) if as_modes else ()))))
            for m in modes + as_modes:
                src = m if m in modes else "out"
                p_m = probs[src]
                acc.band[m][:, idx] = band_voxels(p_m).sum(axis=(2, 3)).T
                acc.masks[m][:, idx] = _one_class_per_pixel(masks[src], p_m).transpose(1, 0, 2, 3)
                if acc.mode_probs is not None and m != mode:
                    acc.mode_probs[m][:, idx] = p_m.transpose(1, 0, 2, 3)
                if m == mode:
                    acc.prob[:, idx] = p_m.transpose(1, 0, 2, 3)
                    per = per[np.arange(S) % per.shape[0]]  # `out` answers for all S samples
                    counts[:, :, idx] = per.reshape(*per.shape[:3], -1).sum(-1).transpose(0, 2, 1)
                    if acc.sample_masks is not None:
                        acc.sample_masks[:, :, idx] = per.transpose(0, 2, 1, 3, 4)
            if progress:
                progress(done + min(start + batch_slices, len(slices)), total)

    stochastic = tuple(m for m in run_modes if m != "out")
    if not gated:
        acc.stochastic_slices = [] if mode == "out" else [int(z) for z in brain_slices]
        run(brain_slices, cfg, run_modes, (), 0, len(brain_slices))
    else:
        out_cfg = dataclasses.replace(cfg, mode="out")
        total = len(brain_slices)
        # pass 1: `out` on every brain slice, written as every mode's answer; pass 2: every mode
        # on the gated-in slices, overwriting them
        run(brain_slices, out_cfg, ("out",) if "out" in run_modes else (), stochastic, 0, total)
        min_px = int(np.ceil(cfg.gate_min_area_mm2 / lm.plan.spacing_mm**2))
        chosen = np.asarray(gate_slices(acc.prob, brain_slices, cfg.gate_threshold, min_px, cfg.gate_margin,
                                         cfg.gate_margin_threshold), dtype=int)
        run(chosen, cfg, run_modes, (), total, total + len(chosen))
        acc.stochastic_slices = [int(z) for z in chosen]
    acc.n_calls = calls_per_slice(cfg, lm.T)[mode]
    acc.network_runtime = "+".join(sorted(used))
    acc.sample_counts = counts.sum(axis=2)
    return acc
def _mask_labels(labels: sitk.Image, inside: np.ndarray) -> sitk.Image:
    """The label map with everything outside `inside` (bool [Z, Y, X]) set to background."""
    arr = sitk.GetArrayFromImage(labels)
    arr[~inside] = 0
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(labels)
    return out


def _one_class_per_pixel(masks: np.ndarray, p: np.ndarray) -> np.ndarray:
    """uint8 [B, C, H, W]: where both class masks are on, only the class with the higher probability
    of this mode stays (on the model grid, from the mode's own probabilities, so a mode's labels do
    not depend on which other modes ran)."""
    m = masks.astype(bool)
    if m.shape[1] == 2:
        both = m[:, 0] & m[:, 1]
        if both.any():
            hem = p[:, 1] > p[:, 0]
            m[:, 0] &= ~(both & hem)
            m[:, 1] &= ~(both & ~hem)
    return m.astype(np.uint8)


def _mirror_context(prepared):
    """The mirror criterion's context on the model grid: the window undone (HU inside the window;
    the criterion compares medians of brain tissue, which lies inside it) and the brain; the midline is
    fitted on first use."""
    from sdpm_cli.postprocess.symmetry import MirrorContext, mirror_context
    from sdpm_cli.preprocess import undo_window

    plan = prepared.plan
    hu = undo_window(prepared.x, plan.window_level, plan.window_width)
    if prepared.midline is not None:  # already fitted for the network's mirror channel, on the same input
        return MirrorContext.with_line(hu, prepared.brain, prepared.midline, (plan.spacing_mm, plan.spacing_mm))
    return mirror_context(hu, prepared.brain, (plan.spacing_mm, plan.spacing_mm))


def _labels_by_mode_native(masks_model: dict[str, np.ndarray], prepared) -> dict[str, sitk.Image]:
    """Every mode's model-grid masks -> native label maps; `union` is built ON the native grid.

    Interpolating each mode on its own and then OR-ing on the model grid lets a mode's native voxel
    fall outside the union (745 salient voxels on a 2.5 mm study). Here the union's score of a class
    is the voxel-wise maximum of the modes' native scores, so any voxel a mode labels as lesion
    (its best score >= 0.5) is lesion in the union too (tested).
    """
    from sdpm_cli.preprocess import probs_to_native

    scores = {m: probs_to_native(v.astype(np.float32), prepared, sparse=True, expand=False)
              for m, v in masks_model.items() if m != "union"}
    if "union" in masks_model:
        # the maximum only where a part holds a score (z maps to z; elsewhere every part is 0): the
        # whole-volume maximum of three 512 x 512 stacks cost 1.3 s on a 65-slice study
        C, Z = masks_model["union"].shape[:2]
        held = np.flatnonzero(np.any([masks_model[m].reshape(C, Z, -1).any(axis=(0, 2)) for m in UNION_PARTS], axis=0))
        union = np.zeros(scores[UNION_PARTS[0]].shape, dtype=np.float32)  # calloc: untouched pages cost nothing
        if len(held):
            union[:, held] = np.maximum.reduce([scores[m][:, held] for m in UNION_PARTS])
        scores["union"] = union
    return {m: _score_to_labels(scores[m], prepared) for m in masks_model}


def _score_to_labels(score: np.ndarray, prepared) -> sitk.Image:
    """Native per-class scores (interpolated binary masks) -> label map.

    Each class mask is interpolated linearly onto the native grid and kept where >= 0.5, so lesion
    boundaries fall half-way between model pixels instead of being blocky; the classes do not
    overlap on the model grid (_one_class_per_pixel), and where their interpolated borders meet
    the class with the higher score wins (an exact tie: the lower label). Only slices holding a
    score are labelled; a thin series is labelled on its slabs and then expanded to every slice.
    """
    C, Z = score.shape[:2]
    labels = np.zeros(score.shape[1:], dtype=np.uint8)
    zs = np.flatnonzero(score.reshape(C, Z, -1).any(axis=(0, 2)))
    if len(zs):
        sub = score[:, zs]
        best = np.argmax(sub, axis=0)
        labels[zs] = np.where(np.max(sub, axis=0) >= 0.5, best + 1, 0).astype(np.uint8)
    slabs = getattr(prepared, "slabs", None)
    if slabs is not None:
        labels = slabs.expand(labels)
    return prepared.set_source_geometry(sitk.GetImageFromArray(labels))


def _class_volumes(labels: sitk.Image, sample_counts: Optional[np.ndarray], model_voxel_ml: float, mode: str,
                   band_ml: np.ndarray, calib=None) -> dict[str, ClassVolume]:
    """Point volume from the native mask; interval from the calibrated error model (uncertainty.py).

    The diffusion samples' min-max is kept as `sample_range_ml` (sampler noise only, never called
    an interval of the true volume)."""
    from sdpm_cli.postprocess.uncertainty import low_confidence

    arr = sitk.GetArrayViewFromImage(labels)
    voxel_ml = voxel_volume_ml(labels)
    per_sample = sample_counts if sample_counts is not None else np.zeros((1, len(CLASSES)))  # [S, C]
    sample_ml = per_sample * model_voxel_ml
    out: dict[str, ClassVolume] = {}
    for c, name in CLASSES.items():
        vol = float(np.count_nonzero(arr == c)) * voxel_ml
        s = sample_ml[:, c - 1]
        rng = (float(s.min()), float(s.max())) if mode != "out" and sample_counts is not None and len(s) > 1 else None
        cal = calib.get(mode, name) if calib is not None else None
        ci = cal.interval(vol, float(band_ml[c - 1])) if cal is not None else None
        out[name] = ClassVolume(name=name, label=c, volume_ml=vol, ci95_ml=ci, n_samples=int(len(s)),
                                band_ml=float(band_ml[c - 1]), sample_range_ml=rng,
                                level=calib.level if cal is not None else None,
                                low_confidence=vol > 0 and low_confidence(vol, ci, None))
    return out
