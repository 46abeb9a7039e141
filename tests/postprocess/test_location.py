"""Lesion location class on heads built here: a spherical skull shell (1000 HU) around brain (30 HU)
with subarachnoid CSF under the inner table, two CSF ventricles and radial CSF sulci (5 HU)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.outputs.report import build_report, lesion_rows, report_to_csv, validate_report
from sdpm_cli.postprocess.lesions import add_locations, measure_lesions, report_csv
from sdpm_cli.postprocess.location import (
    DEFAULT_THRESHOLDS,
    LOCATION_CLASSES,
    LocationContext,
    classify_lesions,
)

R = 60.0  # inner table radius, mm
BLOOD = 65.0


def _coords(spacing, half=R + 10, zhalf=45.0):
    sx, sy, sz = spacing
    nx, ny, nz = int(2 * half / sx) + 1, int(2 * half / sy) + 1, int(2 * zhalf / sz) + 1
    x = (np.arange(nx) * sx - half)[None, None, :]
    y = (np.arange(ny) * sy - half)[None, :, None]
    z = (np.arange(nz) * sz - zhalf)[:, None, None]
    return x, y, z, (-half, -half, -zhalf)


def _sulcus(x, y, r, deg, depth=15.0, width=2.0):
    a = np.deg2rad(deg)
    return (np.abs(-np.sin(a) * x + np.cos(a) * y) < width / 2) & ((np.cos(a) * x + np.sin(a) * y) > 0) & \
        (r > R - depth) & (r <= R)


def _cap(x, y, z, r, direction, half_angle_deg, max_thick):
    """Blood on the inner table: thickness max_thick at the centre of a cap, tapering to 0 at its rim."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    th = np.arccos(np.clip((x * d[0] + y * d[1] + z * d[2]) / np.maximum(r, 1e-3), -1, 1))
    thick = max_thick * np.clip(1 - (th / np.deg2rad(half_angle_deg)) ** 2, 0, 1)
    return (r <= R) & (r > R - thick)


def lesion_mask(kind, x, y, z, r, vent):
    if kind == "subdural":  # a crescent over the right convexity (patient right = -x), 9 mm at most
        return _cap(x, y, z, r, (-1, 0, 0), 55, 9.0)
    if kind == "epidural":  # a lens over the left frontal convexity, 18 mm thick, 60 degrees across
        return _cap(x, y, z, r, (0.6, -0.8, 0), 30, 18.0)
    if kind == "falx":  # a 3 mm sagittal sheet along the falx, above the ventricles
        return (np.abs(x - 0.5) < 1.5) & (np.abs(y) < 35) & (z > 18) & (r < R - 1.5)
    if kind == "intraventricular":  # a blob inside the left ventricle
        return ((x - 10) ** 2 + (y - 8) ** 2 + z**2 <= 5.0**2) & vent
    if kind == "subarachnoid":  # the sulcus at 45 degrees filled with blood
        return _sulcus(x, y, r, 45, depth=14.0) & (r <= R - 1.5) & (np.abs(z) < 20)
    if kind == "deep":  # a parenchymal ball 14 mm below the table
        return (x + 5) ** 2 + (y + 35) ** 2 + (z - 5) ** 2 <= 10.0**2
    if kind == "cortical":  # a contusion-like ball just under the cortex (3-4 mm from the table)
        return (x - 5) ** 2 + (y - (R - 14)) ** 2 + (z + 10) ** 2 <= 9.0**2
    raise ValueError(kind)


def head(spacing=(0.5, 0.5, 5.0), kinds=("subdural",), *, label=2, direction=None, skull=True, seed=0):
    """(CT in HU, labels) on the same grid; every lesion painted at BLOOD HU with `label`."""
    x, y, z, origin = _coords(spacing)
    r = np.sqrt(x**2 + y**2 + z**2)
    hu = np.full(r.shape, -1000.0, np.float32)
    if skull:
        hu[r <= R + 6] = 1000.0
    hu[r <= R] = 30.0
    hu[(r > R - 1.5) & (r <= R)] = 5.0  # subarachnoid CSF under the inner table
    vent = np.zeros(r.shape, bool)
    for cx in (-10, 10):
        vent |= ((x - cx) / 7) ** 2 + (y / 22) ** 2 + (z / 14) ** 2 <= 1
    hu[vent] = 5.0
    for deg in range(15, 360, 30):
        hu[_sulcus(x, y, r, deg)] = 5.0
    lab = np.zeros(r.shape, np.uint8)
    for kind in kinds:
        m = lesion_mask(kind, x, y, z, r, vent)
        hu[m] = BLOOD
        lab[m] = label
    hu += np.random.default_rng(seed).normal(0, 3, hu.shape).astype(np.float32)
    img = sitk.GetImageFromArray(hu.astype(np.int16))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    lb = sitk.GetImageFromArray(lab)
    lb.CopyInformation(img)
    if direction is not None:  # the same voxels stored with other axes: flip the arrays to match
        img, lb = (_restore(im, direction) for im in (img, lb))
    return img, lb


def _restore(img, direction):
    """The same physical image, stored with a flipped direction (array axes reversed where flipped)."""
    d = np.asarray(direction, float).reshape(3, 3)
    flips = [bool(d[i, i] < 0) for i in range(3)]
    arr = sitk.GetArrayFromImage(img)
    for ax_xyz, f in enumerate(flips):
        if f:
            arr = np.flip(arr, axis=2 - ax_xyz)
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    out.SetSpacing(img.GetSpacing())
    size = np.array(img.GetSize()) - 1
    origin = np.array(img.GetOrigin()) + np.where(flips, size * np.array(img.GetSpacing()), 0.0)
    out.SetOrigin(tuple(origin))
    out.SetDirection(tuple(d.ravel()))
    return out


EXPECTED = {
    "subdural": "extra-axial",
    "epidural": "extra-axial",
    "falx": "extra-axial",
    "intraventricular": "intraventricular",
    "subarachnoid": "subarachnoid",
    "deep": "intra-axial",
    "cortical": "intra-axial",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_pattern_gets_its_class(kind):
    img, lab = head((0.5, 0.5, 5.0), (kind,))
    res = classify_lesions(lab, img)
    assert res, "the lesion was painted"
    biggest = max(res, key=lambda r: r.n_voxels)
    assert biggest.location == EXPECTED[kind], (biggest.reason, biggest.evidence)
    # thin tips of a crescent cut by 5 mm slices are their own components; they lie on the table too
    assert {r.location for r in res} == {EXPECTED[kind]}
    assert biggest.reason and all(v is None or np.isfinite(v) for v in biggest.evidence.values())


def test_named_evidence_measures_what_was_drawn():
    img, lab = head((0.5, 0.5, 5.0), ("subdural", "intraventricular", "subarachnoid", "deep"))
    by = {}
    for r in classify_lesions(lab, img):
        by.setdefault(r.location, max([r], key=lambda q: q.n_voxels))
        if r.n_voxels > by[r.location].n_voxels:
            by[r.location] = r
    sdh, ivh, sah, ich = (by[k].evidence for k in ("extra-axial", "intraventricular", "subarachnoid", "intra-axial"))
    assert sdh["table_min_mm"] <= 0.5 and sdh["table_contact"] >= 0.4
    assert 5.0 <= sdh["thickness_mm"] <= 9.5 and sdh["flatness"] >= 5
    assert ivh["csf_border"] >= 0.8 and ivh["table_min_mm"] >= 30 and ivh["relative_depth"] >= 0.6
    assert sah["mean_thickness_mm"] <= 2.5 and sah["table_reach_mm"] >= 10  # thin, and reaches deep into the sulcus
    assert 12 <= ich["table_min_mm"] <= 16 and ich["flatness"] < 2 and ich["midline_mm"] == pytest.approx(5, abs=1.5)


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 5.0), (1.0, 1.0, 1.0), (0.8, 0.5, 2.5)])
def test_anisotropic_spacing_gives_the_same_answer_in_mm(spacing):
    img, lab = head(spacing, ("subdural", "intraventricular", "deep"))
    res = classify_lesions(lab, img)
    big = {}
    for r in res:
        if r.n_voxels > big.get(r.location, (0, None))[0]:
            big[r.location] = (r.n_voxels, r)
    assert set(big) == {"extra-axial", "intraventricular", "intra-axial"}
    sdh = big["extra-axial"][1].evidence
    assert 5.0 <= sdh["thickness_mm"] <= 9.5  # physical mm, whatever the voxel shape
    ich = big["intra-axial"][1].evidence
    assert ich["table_min_mm"] == pytest.approx(14.0, abs=1.5)


def test_flipped_storage_and_infarct_label():
    direction = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    img, lab = head((0.5, 0.5, 5.0), ("deep",), label=1, direction=direction)
    (r,) = classify_lesions(lab, img)
    assert r.label == 1 and r.location == "intra-axial"
    img, lab = head((0.5, 0.5, 5.0), ("falx",), direction=direction)
    (r,) = classify_lesions(lab, img)
    assert r.location == "extra-axial" and r.evidence["midline_mm"] <= 2.0


def test_order_matches_measure_lesions_and_brain_may_be_given():
    from sdpm_cli.preprocess.brainmask import brain_mask

    img, lab = head((1.0, 1.0, 5.0), ("deep", "intraventricular", "epidural"))
    res = classify_lesions(lab, img, brain_mask(img))
    measured = measure_lesions(lab)
    assert [(r.label, r.id, r.n_voxels) for r in res] == [(les.label, les.id, les.n_voxels) for les in measured.lesions]
    assert [tuple(map(tuple, les.bbox_index)) for les in measured.lesions] == [r.bbox_index for r in res]


def test_no_lesion_no_work_and_grid_checked():
    img, lab = head((1.0, 1.0, 5.0), ())
    assert classify_lesions(lab, img) == []
    other = sitk.Image(lab)
    other.SetOrigin((1.0, 2.0, 3.0))
    with pytest.raises(InputRejected, match="not on the mask's grid"):
        classify_lesions(other, img)


def test_skull_stripped_image_uses_the_cavity_boundary():
    img, lab = head((1.0, 1.0, 5.0), ("deep",), skull=False)
    brain = sitk.GetImageFromArray((sitk.GetArrayFromImage(img) > -100).astype(np.uint8))
    brain.CopyInformation(img)
    ctx = LocationContext(img, brain, sitk.GetArrayFromImage(lab) > 0)
    assert not ctx.table_found and any("boundary stands in" in n for n in ctx.notes)
    (r,) = classify_lesions(lab, img, brain)
    assert r.location == "intra-axial"


@pytest.mark.parametrize("spacing,skull", [((0.5, 0.5, 5.0), True), ((1.0, 1.0, 1.0), True), ((1.0, 1.0, 5.0), False)])
def test_table_distance_skips_only_searches_that_find_nothing(spacing, skull):
    """Voxels the coarse field puts far from the table skip the KD-tree search: every distance must
    be the one the search of every voxel gives (exact near the table, the coarse field beyond)."""
    from sdpm_cli.postprocess.location import _EXACT_WITHIN_MM, _corrected

    img, lab = head(spacing, ("deep",), skull=skull)
    brain = None
    if not skull:
        brain = sitk.GetImageFromArray((sitk.GetArrayFromImage(img) > -100).astype(np.uint8))
        brain.CopyInformation(img)
    ctx = LocationContext(img, brain, sitk.GetArrayFromImage(lab) > 0)
    assert ctx.table_found == skull
    vox = np.argwhere(ctx.cavity)[::7]
    q = vox * ctx.spacing
    d, j = ctx.tree.query(q, distance_upper_bound=_EXACT_WITHIN_MM)
    near = np.isfinite(d)
    want = np.empty(len(q))
    want[near] = _corrected(ctx.tree.data[j[near]] - q[near], ctx.spacing)
    c = (vox[~near] - ctx._coarse_off) // ctx._coarse_step
    want[~near] = ctx._coarse[c[:, 0], c[:, 1], c[:, 2]]
    assert near.mean() > 0.2 and (~near).mean() > 0.1  # both kinds of voxel are asked
    np.testing.assert_array_equal(ctx.table_distance(vox), want)


def test_thresholds_are_one_frozen_dataclass():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_THRESHOLDS.near_table_mm = 5.0  # type: ignore[misc]
    stricter = dataclasses.replace(DEFAULT_THRESHOLDS, ea_flatness_min=100.0, falx_flatness_min=100.0)
    img, lab = head((1.0, 1.0, 5.0), ("epidural",))
    assert classify_lesions(lab, img)[0].location == "extra-axial"
    assert classify_lesions(lab, img, thresholds=stricter)[0].location != "extra-axial"
    assert set(LOCATION_CLASSES) == set(EXPECTED.values())


# ---- the report, its CSV and `sdpm volume` ------------------------------------------------------------


def test_report_rows_csv_and_schema_carry_the_location():
    img, lab = head((1.0, 1.0, 5.0), ("intraventricular", "deep"))
    plain = lesion_rows(lab)
    assert plain and all("location" not in r for r in plain)  # labels only: as before
    rows = lesion_rows(lab, img)
    assert [r["location"] for r in rows] == ["intra-axial", "intraventricular"]  # largest first
    assert rows[1]["location_evidence"]["csf_border"] > 0.5 and rows[1]["location_reason"]
    rep = build_report(
        volumes={"infarct": 0.0, "hemorrhage": sum(r["volume_ml"] for r in rows)},
        lesions=rows, series={}, warnings=[], model={"name": "m", "version": "1", "sha256": ""},
        run={"mode": "out", "preset": "fast", "seed": 0, "device": "cpu", "runtime_s": 1.0}, software={"sdpm": "x"},
    )  # fmt: skip
    validate_report(rep)
    json.dumps(rep, allow_nan=False)
    bad = json.loads(json.dumps(rep))
    bad["lesions"][0]["location"] = "somewhere"
    with pytest.raises(ValueError, match="somewhere"):
        validate_report(bad)
    table = list(csv.DictReader(io.StringIO(report_to_csv(rep))))
    assert [r["location"] for r in table] == ["intra-axial", "intraventricular"]
    rep_plain = dict(rep, lesions=plain)
    assert [r["location"] for r in csv.DictReader(io.StringIO(report_to_csv(rep_plain)))] == ["", ""]


def test_measure_lesions_report_gets_locations():
    img, lab = head((1.0, 1.0, 5.0), ("epidural",))
    rep = measure_lesions(lab)
    assert "location" not in rep.to_dict()["lesions"][0]
    add_locations(rep, lab, img)
    d = rep.to_dict()["lesions"][0]
    assert d["location"] == "extra-axial" and "table_contact" in d["location_evidence"]
    rows = list(csv.DictReader(io.StringIO(report_csv(rep))))
    assert [r["location"] for r in rows if r["kind"] == "lesion"] == ["extra-axial"]
    assert [r["location"] for r in rows if r["kind"] == "label"] == ["", ""]


def test_volume_cli_with_image(run_cli, tmp_path):
    img, lab = head((1.0, 1.0, 5.0), ("intraventricular", "deep"))
    ct, mask = tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz"
    sitk.WriteImage(img, str(ct))
    sitk.WriteImage(lab, str(mask))
    code, stdout, _ = run_cli("volume", mask, "--image", ct, "--json")
    assert code == 0
    assert [les["location"] for les in json.loads(stdout)["lesions"]] == ["intra-axial", "intraventricular"]
    code, stdout, _ = run_cli("volume", mask, "--image", ct, "--csv")
    assert code == 0 and [r["location"] for r in csv.DictReader(io.StringIO(stdout)) if r["kind"] == "lesion"] == [
        "intra-axial", "intraventricular"]
    code, stdout, _ = run_cli("volume", mask, "--image", ct)
    assert code == 0 and "location" in stdout and "intraventricular" in stdout
    code, stdout, _ = run_cli("volume", mask)
    assert code == 0 and "intraventricular" not in stdout  # no CT: no location column
    code, stdout, _ = run_cli("volume", mask, "--json")
    assert "location" not in json.loads(stdout)["lesions"][0]
    small = sitk.RegionOfInterest(img, [img.GetSize()[0] - 2, img.GetSize()[1], img.GetSize()[2]], [0, 0, 0])
    sitk.WriteImage(small, str(tmp_path / "small.nii.gz"))
    code, stdout, stderr = run_cli("volume", mask, "--image", tmp_path / "small.nii.gz")
    assert code == 3 and "not on the mask's grid" in stderr


def test_preview_legend_counts_locations(tmp_path):
    from sdpm_cli.outputs.preview import legend_label, write_preview

    rows = [{"class": "hemorrhage", "location": "subarachnoid"}, {"class": "hemorrhage", "location": "extra-axial"},
            {"class": "hemorrhage", "location": "subarachnoid"}, {"class": "infarct"}]
    assert legend_label("hemorrhage", rows) == "hemorrhage (1 extra-axial, 2 subarachnoid)"
    assert legend_label("infarct", rows) == "infarct" and legend_label("infarct") == "infarct"
    img, lab = head((1.0, 1.0, 5.0), ("epidural",))
    out = write_preview(img, lab, tmp_path / "qc.png", lesions=lesion_rows(lab, img))
    assert out.read_bytes()[:4] == b"\x89PNG"
