"""Training data: case discovery, the segment preprocessing path, the cache and patch sampling."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.preprocess import PreprocessPlan
from sdpm_cli.train import data as D

from .conftest import SPACING, phantom

PLAN = PreprocessPlan(spacing_mm=5.0, size=32)  # same in-plane spacing as the phantom: no resampling loss


def test_nnunet_layout_pairs_images_with_labels(tiny_dataset):
    cases = D.find_cases(tiny_dataset)
    assert [c.case for c in cases] == ["case_0000", "case_0001"]
    assert all(c.image.name == f"{c.case}_0000.nii.gz" and c.label.name == f"{c.case}.nii.gz" for c in cases)


def test_csv_paths_are_relative_to_the_csv(tiny_csv):
    cases = D.find_cases(tiny_csv)
    assert len(cases) == 2 and all(c.image.is_file() and c.label.is_file() for c in cases)


def test_missing_label_and_bad_folders_are_rejected(tiny_dataset, tmp_path):
    (tiny_dataset / "labelsTr" / "case_0001.nii.gz").unlink()
    with pytest.raises(InputRejected, match="case case_0001: no label"):
        D.find_cases(tiny_dataset)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputRejected, match="no imagesTr/ and labelsTr/"):
        D.find_cases(tmp_path / "empty")
    with pytest.raises(InputRejected, match="does not exist"):
        D.find_cases(tmp_path / "nowhere")
    bad = tmp_path / "pairs.csv"
    with open(bad, "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "label"], ["a.nii.gz", "b.nii.gz"]])
    with pytest.raises(InputRejected, match="image not found"):
        D.find_cases(bad)


def test_case_split_is_by_case_seeded_and_disjoint(tiny_dataset):
    cases = [D.TrainCase(f"c{i}", tiny_dataset, tiny_dataset) for i in range(10)]
    tr, va = D.split_cases(cases, 0.2, seed=3)
    assert len(va) == 2 and len(tr) == 8 and not {c.case for c in tr} & {c.case for c in va}
    assert D.split_cases(cases, 0.2, seed=3) == (tr, va)
    assert D.split_cases(cases[:2], 0.1, seed=0)[1] != []  # at least one validation case when possible
    assert D.split_cases(cases[:1], 0.5, seed=0) == (cases[:1], [])


def test_prepared_case_keeps_brain_slices_and_lesion_volume(tiny_dataset):
    case = D.find_cases(tiny_dataset)[0]
    arr = D.load_case(case, PLAN)
    _, lab = phantom(0)
    assert arr.x.dtype == np.float16 and arr.y.dtype == np.uint8 and arr.x.shape == arr.y.shape == arr.brain.shape
    assert arr.x.shape[1:] == (32, 32) and 0 < arr.x.shape[0] < lab.shape[0]  # slices without brain dropped
    assert arr.x.min() >= -1 and arr.x.max() <= 1 and np.all(arr.x[arr.brain == 0] == -1)
    # model grid spacing equals the native spacing: every lesion voxel is carried over exactly
    for k in (1, 2):
        assert np.count_nonzero(arr.y == k) == np.count_nonzero(lab == k) > 0
    assert arr.lost_lesion_voxels == 0 and np.all(arr.brain[arr.y > 0] == 1)


def test_label_on_another_grid_or_with_foreign_values_is_rejected(tiny_dataset):
    case = D.find_cases(tiny_dataset)[0]
    lab = sitk.ReadImage(str(case.label))
    shifted = sitk.Image(lab)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(case.label))
    with pytest.raises(InputRejected, match="case case_0000: label and image are on different grids"):
        D.load_case(case, PLAN)
    arr = sitk.GetArrayFromImage(lab)
    arr[0, 0, 0] = 7
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(lab)
    sitk.WriteImage(bad, str(case.label))
    with pytest.raises(InputRejected, match="values other than 0/1/2"):
        D.load_case(case, PLAN)


def test_cache_is_reused_and_keyed_by_content_and_plan(tiny_dataset, tmp_path, monkeypatch):
    case = D.find_cases(tiny_dataset)[0]
    first = D.load_case(case, PLAN, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("cache not used")

    monkeypatch.setattr(D, "prepare_case", boom)
    again = D.load_case(case, PLAN, tmp_path / "cache")
    assert again.key == first.key and np.array_equal(again.x, first.x) and np.array_equal(again.y, first.y)
    assert D.case_key(case, PreprocessPlan(spacing_mm=5.0, size=40).to_dict()) != first.key
    hu, lab = phantom(9)  # new contents under the same file name -> new key
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(case.image))
    assert D.case_key(case, PLAN.to_dict()) != first.key


@pytest.fixture
def slices(tiny_dataset):
    return D.stack_cases([D.load_case(c, PLAN) for c in D.find_cases(tiny_dataset)])


def test_lesion_aware_patches_contain_lesion(slices):
    s = D.PatchSampler(slices, 16, lesion_fraction=1.0, seed=0)
    x, y, b = s.sample(64)
    assert x.shape == (64, 1, 16, 16) and x.dtype == np.float32 and y.shape == b.shape == (64, 16, 16)
    assert all(y[i].any() for i in range(64))
    assert {1, 2} <= set(np.unique(y).tolist())  # both classes are drawn
    rand = D.PatchSampler(slices, 16, lesion_fraction=0.0, seed=0).sample(256)[1]
    assert np.mean([r.any() for r in rand]) < np.mean([r.any() for r in y])


def test_patches_are_cut_from_the_slices(slices):
    x, y, b = D.PatchSampler(slices, 0, 0.5, seed=1).sample(8)  # 0 = whole slices
    assert x.shape == (8, 1, 32, 32)
    for i in range(8):
        n = [k for k in range(slices.n_slices) if np.array_equal(slices.x[k].astype(np.float32), x[i, 0])]
        assert n and np.array_equal(slices.y[n[0]], y[i]) and np.array_equal(slices.brain[n[0]], b[i])


def test_sampler_state_round_trip_and_rank_streams(slices):
    a = D.PatchSampler(slices, 16, 0.5, seed=4)
    a.sample(5)
    st = a.state()
    first = a.sample(7)
    b = D.PatchSampler(slices, 16, 0.5, seed=4)
    b.set_state(st)
    assert all(np.array_equal(u, v) for u, v in zip(first, b.sample(7)))
    r0 = D.PatchSampler(slices, 16, 0.5, seed=4, rank=0).sample(7)[0]
    r1 = D.PatchSampler(slices, 16, 0.5, seed=4, rank=1).sample(7)[0]
    assert not np.array_equal(r0, r1)


def test_dicom_folder_images_train_through_the_segment_path(tmp_path):
    """imagesTr may hold DICOM folders; the label is read on the grid load_study gives the series."""
    from sdpm_cli.ingest import load_study

    from ingest.dicom_factory import write_series  # tests/ is on sys.path (rootdir package layout)

    root = tmp_path / "Dataset901_Dicom"
    folder = root / "imagesTr" / "case_0007_0000"
    write_series(folder)
    (root / "labelsTr").mkdir()
    image = load_study(folder).image
    hu = sitk.GetArrayFromImage(image)
    lab = sitk.GetImageFromArray((hu > 55).astype(np.uint8) * 2 * (hu < 200))  # the phantom's 65 HU bleed
    lab.CopyInformation(image)
    sitk.WriteImage(lab, str(root / "labelsTr" / "case_0007.nii.gz"))
    (case,) = D.find_cases(root)
    assert case.case == "case_0007" and case.image == folder
    arr = D.load_case(case, PreprocessPlan(spacing_mm=4.0, size=48))
    assert arr.x.shape[1:] == (48, 48) and np.count_nonzero(arr.y == 2) > 0 and not np.any(arr.y == 1)


def test_labelled_case_the_head_check_would_refuse_still_trains(tmp_path, monkeypatch):
    """The head checks guard unlabelled clinical input; a labelled training case is not judged by
    them (the randomised generator crops fields of view past what they accept, e.g. a skull ring cut
    on most slices). Here every volume fails the head check: segment refuses, training keeps the case."""
    from sdpm_cli.ingest import anatomy, load_study
    from sdpm_cli.synth import SynthConfig, generate_case

    def refuse(m, rules, label, out, *, stripped=False):
        raise InputRejected(f"{label}: not a head: a skull ring around soft tissue on 3 slice(s)")

    monkeypatch.setattr(anatomy, "judge", refuse)
    case = generate_case(3, SynthConfig(matrix=128, thicknesses_mm=(5.0,), thickness_weights=(1.0,),
                                        domain="clinical", lesion="hemorrhage"))
    img_p, lab_p = tmp_path / "c_0000.nii.gz", tmp_path / "c.nii.gz"
    sitk.WriteImage(case.image, str(img_p))
    sitk.WriteImage(case.label, str(lab_p))
    with pytest.raises(InputRejected, match="not a head"):
        load_study(img_p)
    arrays = D.prepare_case(D.TrainCase("c", img_p, lab_p), PreprocessPlan())
    assert (arrays.y == 2).any() and arrays.lost_lesion_voxels < (sitk.GetArrayViewFromImage(case.label) == 2).sum()


def test_a_mirror_plan_trains_on_image_and_mirror_patches(tiny_dataset):
    plan = PreprocessPlan(spacing_mm=5.0, size=32, mirror_channel=True)
    cases = [D.load_case(c, plan) for c in D.find_cases(tiny_dataset)]
    assert all(c.m is not None and c.m.shape == (c.x.shape[0], 1) + c.x.shape[1:] and c.m.dtype == np.float16 for c in cases)
    s = D.stack_cases(cases)
    x, y, b = D.PatchSampler(s, 0, 0.5, seed=1).sample(6)  # whole slices: both channels come from one slice
    assert x.shape == (6, 2, 32, 32)
    for i in range(6):
        n = [k for k in range(s.n_slices) if np.array_equal(s.x[k].astype(np.float32), x[i, 0])][0]
        assert np.array_equal(s.m[n, 0].astype(np.float32), x[i, 1])
        assert np.all(x[i, 1][b[i] == 0] == -1.0)
    with pytest.raises(ValueError, match="with and without conditioning channels"):
        D.stack_cases([cases[0], D.load_case(D.find_cases(tiny_dataset)[1], PLAN)])


def test_a_context_plan_trains_on_each_slice_with_its_neighbours_either_way_round(tiny_dataset):
    """plan.context_slices = 1: every patch carries the model slices below and above it (taken from
    the whole prepared volume, as inference takes them), in reverse order for about half the patches."""
    from sdpm_cli.preprocess import prepare
    from sdpm_cli.ingest import load_study

    plan = PreprocessPlan(spacing_mm=5.0, size=32, context_slices=1)
    case = D.find_cases(tiny_dataset)[0]
    arrays = D.load_case(case, plan)
    assert arrays.m.shape == (arrays.x.shape[0], 2) + arrays.x.shape[1:]
    full = prepare(load_study(case.image, anatomy=False).image, plan).x
    kept = [next(z for z in range(full.shape[0]) if np.array_equal(full[z].astype(np.float16), arrays.x[i]))
            for i in range(arrays.x.shape[0])]
    for i, z in enumerate(kept):
        below, above = full[max(z - 1, 0)], full[min(z + 1, full.shape[0] - 1)]
        assert np.array_equal(arrays.m[i, 0], below.astype(np.float16)) and np.array_equal(arrays.m[i, 1], above.astype(np.float16))
    s = D.stack_cases([arrays])
    x, _, _ = D.PatchSampler(s, 0, 0.0, seed=2, context_slices=1).sample(40)
    assert x.shape == (40, 3, 32, 32)
    ways = []
    for i in range(40):
        n = [k for k in range(s.n_slices) if np.array_equal(s.x[k].astype(np.float32), x[i, 0])][0]
        nb = s.m[n].astype(np.float32)
        if np.array_equal(nb[0], nb[1]):
            continue  # both neighbours alike (no brain beside it): the order cannot show
        same, turned = np.array_equal(x[i, 1:], nb), np.array_equal(x[i, 1:], nb[::-1])
        assert same or turned
        ways.append(same)
    assert 0 < sum(ways) < len(ways)  # both orders occur
