"""One synthetic head NCCT study with exact lesion truth: `generate_case(seed, cfg) -> SynthCase`."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from sdpm_cli import __version__
from sdpm_cli.labels import CLASSES
from sdpm_cli.synth import scanner
from sdpm_cli.synth.anatomy import TISSUE_CLASSES, build_anatomy
from sdpm_cli.synth.case import LABEL_RULE, SynthCase  # noqa: F401 - re-exported
from sdpm_cli.synth.config import SynthConfig, case_streams, draw_head, draw_protocol
from sdpm_cli.synth.lesions import add_lesions, draw_lesion_plan, draw_mimic_plan

def _image(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def generate_case(seed: int, cfg: SynthConfig | None = None, plan: Sequence[str] | None = None) -> SynthCase:
    """A deterministic function of (seed, cfg[, plan]): same inputs, bit-identical image, label and meta.

    `plan` forces the lesion kinds (lesions.INFARCT_KINDS / HEMORRHAGE_KINDS; tests and figures);
    by default the case draws its own from cfg.lesion.
    """
    cfg = cfg or SynthConfig()
    if cfg.family == "atlas":  # family B: a different generator (held out from training)
        from sdpm_cli.synth.atlas import generate_atlas_case

        return generate_atlas_case(seed, cfg) if plan is None else generate_atlas_case(seed, cfg, plan=plan)
    # independent streams: the head, protocol, pose and lesion plan do not change with the matrix or
    # the anatomy resolution, and the scanner's noise does not move the lesions
    (r_head, r_prot, r_pose, r_plan, r_anat, r_les, r_scan, r_def, r_art, r_mim) = (
        np.random.default_rng(s) for s in case_streams(seed))
    ranges = cfg.ranges
    head = draw_head(r_head, cfg.domain)
    prot = draw_protocol(r_prot, cfg)
    plan = (draw_lesion_plan(r_plan, cfg.lesion, cfg.lesion_free_fraction, cfg.shapeless_infarct_prob)
            if plan is None else list(plan))
    mimic_plan = draw_mimic_plan(r_mim, ranges)

    an = build_anatomy(head, cfg.anatomy_mm, r_anat, with_tissue=cfg.with_tissue)
    acq = scanner.draw_acquisition(r_pose, head, prot, cfg, grid=an.grid, rng_deform=r_def)
    gravity = acq.R.T @ np.array([0.0, 1.0, 0.0])  # supine: blood settles posteriorly in the scanner frame
    lesions, mimics = add_lesions(an, r_les, plan, gravity, ranges, mimic_plan)

    vol = scanner.sample_volume(an.hu, an.grid, acq, cfg.work_factor)
    rest = scanner.add_head_rest(vol, acq, r_scan)
    scale_z = scanner.noise_scale(vol)
    n_streak = scanner.add_streaks(vol, acq, r_scan, ranges.streak_hu) if prot.streaks else 0
    artefacts: dict = {}
    if ranges.bias_hu[1] > 0:
        artefacts["bias"] = scanner.add_bias(vol, acq, r_art, float(r_art.uniform(*ranges.bias_hu)))
    if r_art.random() < ranges.motion_prob:
        artefacts["motion"] = scanner.add_motion(vol, acq, r_art)
    if r_art.random() < ranges.metal_prob:
        artefacts["metal"] = scanner.add_metal(vol, acq, r_art)
    if r_art.random() < ranges.extra_pad_prob:
        artefacts["pads"] = scanner.add_pads(vol, acq, r_art)
    scanner.blur_and_noise(vol, acq, r_scan, scale_z)
    scanner.apply_fov(vol, acq)
    hu = scanner.quantise(vol)
    del vol

    label = np.zeros(hu.shape, np.uint8)
    vox_ml = float(np.prod(acq.spacing)) / 1000.0
    for les in lesions:
        sl, frac = scanner.sample_fraction(les.frac, les.sl, an.grid, acq)
        sub = label[sl]
        hit = (frac >= 0.5) & (sub == 0)
        sub[hit] = les.cls
        les.volume_ml = float(hit.sum()) * vox_ml
    ref = acq.reference()
    image = _image(hu, ref)
    label_img = _image(label, ref)
    tissue = _image(scanner.sample_tissue(an.tissue, an.grid, acq), ref) if an.tissue is not None else None
    head_flags = dict(head.flags)
    mimics = mimics + [{"kind": k} for k in ("pineal_calc", "choroid_calc", "falx_calc", "basal_calc") if head_flags.get(k)]
    if artefacts.get("metal"):
        mimics.append({"kind": "metal", **artefacts["metal"]})

    counts = {name: int((label == c).sum()) for c, name in CLASSES.items()}
    meta = {
        "seed": int(seed),
        "generator": f"sdpm synth {__version__}",
        "family": "analytic",
        "domain": cfg.domain,
        "protocol": {
            "name": prot.name, "slice_thickness_mm": prot.thickness_mm, "spacing_mm": list(acq.spacing),
            "matrix": prot.matrix, "fov_mm": round(prot.fov_mm, 4), "n_slices": acq.n_slices,
            "kernel": prot.kernel, "kvp": prot.kvp, "noise_sigma_hu": round(prot.noise_sigma, 2),
            "psf_sigma_mm": round(prot.psf_sigma_mm, 3), "psf_tail": round(prot.psf_tail, 3),
            "psf_tail_mm": round(prot.psf_tail_mm, 2), "edge_boost": round(prot.edge_boost, 3),
            "streaks": bool(n_streak), "streak_slices": n_streak,
            "subslices": acq.n_sub,
        },
        "pose": {"pitch_deg": round(acq.angles_deg[0], 2), "yaw_deg": round(acq.angles_deg[1], 2),
                 "roll_deg": round(acq.angles_deg[2], 2), "head_centre_mm": [round(float(v), 2) for v in acq.t],
                 "deformation_mm": round(acq.deform_mm, 2)},
        "artefacts": artefacts,
        "mimics": mimics,
        "head": {"scale": round(head.scale, 3), "atrophy": round(head.atrophy, 3),
                 "gm_wm_contrast_hu": round(head.hu["gm"] - head.hu["wm"], 2),
                 "hu": {k: round(v, 1) for k, v in head.hu.items()}, "flags": head_flags, "head_rest": rest},
        "lesions": [
            {"class": les.cls, "name": CLASSES[les.cls], "kind": les.kind, "location": les.location,
             "location_class": les.location_class, "volume_ml": round(les.volume_ml, 4), **les.params}
            for les in lesions
        ],
        "volume_ml": {name: round(n * vox_ml, 4) for name, n in counts.items()},
        "voxels": counts,
        "voxel_ml": vox_ml,
        "label_rule": LABEL_RULE,
    }
    if tissue is not None:
        meta["tissue_classes"] = TISSUE_CLASSES
    return SynthCase(image=image, label=label_img, meta=meta, tissue=tissue)
