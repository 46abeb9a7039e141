"""Phantom family B ("atlas"): head NCCT with exact lesion truth, built from a real brain atlas.

`generate_atlas_case(seed, cfg, plan=None) -> SynthCase` (what `generate_case` calls when
cfg.family == "atlas"). Family B is independent of family A (`sdpm_cli.synth.anatomy`, `lesions`,
`scanner`): its anatomy, lesion shapes and scanner model are its own, so a model trained on family A
and scored on family B shows how much it has over-fitted to our generator. It is held out: never used
to train the shipped model.

Anatomy: the MNI ICBM152 2009a symmetric templates at 1 mm (grey and white matter probability maps and
the skull-stripped T1), as shipped inside nilearn's wheel (read with SimpleITK; nilearn's own API is not
imported). Real cortical folding, ventricles, deep nuclei, brainstem and cerebellum; per case a smooth
random deformation, anisotropic scale, pose and atrophy; skull, scalp and a crude skull base around the
atlas' intracranial cavity (see head.py). Lesions in lesions.py, the scanner in scanner.py.

Licences (the files are read from the installed nilearn, not redistributed by sdpm):
* nilearn: BSD-3-Clause.
* ICBM 2009a Nonlinear Symmetric template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain
  Imaging Centre, Montreal Neurological Institute, McGill University. Permission to use, copy, modify
  and distribute this software and its documentation for any purpose and without fee is hereby
  granted, provided that the above copyright notice appear in all copies. The authors and McGill
  University make no representations about the suitability of this software for any purpose. It is
  provided "as is" without express or implied warranty. (Fonov et al., NeuroImage 2011 and 2009.)
"""

from __future__ import annotations

from typing import Iterable, Union

import numpy as np
import SimpleITK as sitk

from sdpm_cli import __version__
from sdpm_cli.labels import CLASSES
from sdpm_cli.synth.atlas import lesions as L
from sdpm_cli.synth.atlas.head import HEAD_CENTRE, TISSUE_CLASSES, build_fractions, compose_hu, draw_head
from sdpm_cli.synth.atlas.scanner import (draw_geometry, draw_protocol, finish, sample_fraction, sample_image,
                                          sample_tissue)
from sdpm_cli.synth.atlas.template import MISSING, load_template
from sdpm_cli.synth.config import SynthConfig

__all__ = ["generate_atlas_case", "draw_plan", "MISSING", "TISSUE_CLASSES", "PlanItem"]

PlanItem = Union[str, dict]
_EXTRA_AXIAL = ("subdural", "epidural")


def draw_plan(rng: np.random.Generator, mode: str, free_fraction: float) -> list[dict]:
    """The lesions of one case: lesion mode as family A (both | infarct | hemorrhage | none)."""
    if mode == "none":
        return []
    if mode == "both":
        if rng.random() < free_fraction:
            return []
        cat = str(rng.choice(["infarct", "hemorrhage", "both"], p=[0.35, 0.4, 0.25]))
    else:
        cat = mode
    plan: list[str] = []
    if cat in ("infarct", "both"):
        if rng.random() < 0.8:
            plan.append("territorial")
            plan += ["lacune"] * int(rng.choice([0, 0, 0, 1, 2]))
        else:
            plan += ["lacune"] * int(rng.integers(1, 4))
    if cat in ("hemorrhage", "both"):
        primary = str(rng.choice(L.HEMORRHAGE_KINDS, p=[0.2, 0.18, 0.1, 0.17, 0.08, 0.15, 0.12]))
        plan.append(primary)
        if primary == "deep" and rng.random() < 0.3:
            plan.append("intraventricular")
        if primary in ("subdural", "epidural", "contusion") and rng.random() < 0.35:  # trauma: more than one
            plan.append(str(rng.choice(["subarachnoid", "contusion", "subdural"])))
    return [{"kind": k} for k in plan]


def _normalise_plan(plan: Iterable[PlanItem]) -> list[dict]:
    out = []
    for item in plan:
        d = {"kind": item} if isinstance(item, str) else dict(item)
        if d.get("kind") not in L.KINDS:
            raise ValueError(f"unknown lesion kind {d.get('kind')!r} (choose from {', '.join(L.KINDS)})")
        out.append(d)
    return out


def _make(item: dict, an, rng, head, gravity) -> list:
    kw = {k: v for k, v in item.items() if k != "kind"}
    kind = item["kind"]
    if kind == "territorial":
        return [L.territorial(an, rng, head, **kw)]
    if kind == "lacune":
        return [L.lacune(an, rng, head, **kw)]
    if kind == "lobar":
        return [L.lobar(an, rng, head, **kw)]
    if kind == "deep":
        return [L.deep(an, rng, head, **kw)]
    if kind == "intraventricular":
        return [L.intraventricular(an, rng, head, gravity, **kw)]
    if kind == "subdural":
        return [L.subdural(an, rng, head, **kw)]
    if kind == "epidural":
        return [L.epidural(an, rng, head, **kw)]
    if kind == "subarachnoid":
        return [L.subarachnoid(an, rng, head, **kw)]
    return L.contusions(an, rng, head, **kw)


def _image(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def _r(v, n=2):
    return [round(float(x), n) for x in v]


def generate_atlas_case(seed: int, cfg: SynthConfig | None = None, plan: Iterable[PlanItem] | None = None):
    """A deterministic function of (seed, cfg, plan). plan forces the lesions: kinds ("subdural", ...) or
    dicts with options ({"kind": "subdural", "site": "convexity", "thickness_mm": 8}); None draws them."""
    from sdpm_cli.synth.case import LABEL_RULE, SynthCase

    cfg = cfg or SynthConfig(family="atlas")
    h = float(np.clip(cfg.anatomy_mm, 1.0, 2.0))
    tpl = load_template(h)
    # family B's own streams (not family A's): head, protocol, pose, plan, anatomy, lesions, scanner
    streams = np.random.SeedSequence([0x5D9B, int(seed)]).spawn(7)
    r_head, r_prot, r_pose, r_plan, r_anat, r_les, r_scan = (np.random.default_rng(s) for s in streams)
    head = draw_head(r_head)
    prot = draw_protocol(r_prot, cfg)
    radial = tpl.surface - np.asarray(HEAD_CENTRE)
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    surface_out = tpl.surface + radial * (head.delta_mm + 10.0 + head.scalp_t + 3.0)
    geo = draw_geometry(r_pose, tpl, prot, head, cfg, surface_out)
    items = draw_plan(r_plan, cfg.lesion, cfg.lesion_free_fraction) if plan is None else _normalise_plan(plan)
    items = sorted(items, key=lambda d: d["kind"] not in _EXTRA_AXIAL)  # collections compress the brain first

    an = build_fractions(tpl, head)
    g = np.diag(1.0 / geo.scale) @ geo.R.T @ np.array([0.0, 1.0, 0.0])  # supine: blood settles posteriorly
    gravity = g / np.linalg.norm(g)
    painter = L.Painter(an)
    for item in items:
        for les in _make(item, an, r_les, head, gravity):
            painter.add(les)
    mimics = compose_hu(an, head, r_anat, with_tissue=cfg.with_tissue)
    for les in painter.lesions:
        L.apply_hu(les, an, head, r_les)

    vol = sample_image(an.hu, tpl, geo)
    hu, info = finish(vol, geo, r_scan)
    del vol
    label = np.zeros(hu.shape, np.uint8)
    vox_ml = float(np.prod(geo.spacing)) / 1000.0
    for les in painter.lesions:
        org = tpl.crop_origin(les.sl)
        lo = np.asarray(org)
        hi = lo + tpl.h * (np.array(les.frac.shape[::-1]) - 1)
        sl, frac = sample_fraction(les.frac, org, tpl.h, geo, lo, hi)
        if sl is None:
            continue
        sub = label[sl]
        hit = (frac >= 0.5) & (sub == 0)
        sub[hit] = les.cls
        les.volume_ml = float(hit.sum()) * vox_ml
    ref = geo.reference()
    tissue = None
    if cfg.with_tissue:
        tissue = _image(sample_tissue(an.tissue, tpl, geo), ref)
    counts = {name: int((label == c).sum()) for c, name in CLASSES.items()}
    for m in mimics:
        if "centre_lps" in m:
            m["centre_mm"] = _r(geo.to_acquired(m.pop("centre_lps")))
    meta = {
        "seed": int(seed),
        "generator": f"sdpm synth {__version__} (family B: atlas)",
        "family": "atlas",
        "protocol": {
            "name": prot.name, "slice_thickness_mm": prot.thickness_mm, "spacing_mm": list(geo.spacing),
            "matrix": prot.matrix, "fov_mm": round(prot.fov_mm, 4), "n_slices": geo.n_slices,
            "kernel": prot.kernel, "kvp": prot.kvp, "noise_sigma_hu": round(prot.noise_sigma, 2),
            "noise_filter": prot.noise_filter, "noise_cutoff_per_mm": round(prot.noise_cutoff, 3),
            "psf": prot.psf, "psf_sigma_mm": round(prot.psf_mm, 3), "cupping_hu": round(prot.cupping_hu, 2),
            "streaks": bool(info["streak_slices"]), "streak_slices": int(info["streak_slices"]),
            "subslices": geo.n_sub,
        },
        "pose": {"pitch_deg": round(geo.angles[0], 2), "yaw_deg": round(geo.angles[1], 2),
                 "roll_deg": round(geo.angles[2], 2), "head_centre_mm": _r(geo.t),
                 "scale": _r(geo.scale, 3), "deformation_max_mm": round(geo.max_disp, 2)},
        "head": {**head.summary(), "head_rest": info["head_rest"], "atlas": "MNI ICBM152 2009a symmetric (nilearn)"},
        "lesions": [
            {"class": les.cls, "name": CLASSES[les.cls], "kind": les.kind, "location": les.location,
             "location_class": les.location_class, "volume_ml": round(les.volume_ml, 4),
             "atlas_ml": round(les.atlas_ml(tpl.h), 3), "centre_mm": _r(geo.to_acquired(les.centre)),
             **({"hu": round(les.hu, 1)} if les.cls == L.HEMORRHAGE else {}), **les.params}
            for les in painter.lesions
        ],
        "mimics": mimics,
        "volume_ml": {name: round(n * vox_ml, 4) for name, n in counts.items()},
        "voxels": counts,
        "voxel_ml": vox_ml,
        "label_rule": LABEL_RULE,
    }
    if tissue is not None:
        meta["tissue_classes"] = TISSUE_CLASSES
    return SynthCase(image=_image(hu, ref), label=_image(label, ref), meta=meta, tissue=tissue)
