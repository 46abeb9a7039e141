"""The production processor (`make_processor`: the engine, model loaded once; mask, report, SEG, SR)
behind the node, over pynetdicom: the forwarded SEG is the written mask, voxel for voxel, and the
forwarded SR carries the report's volumes."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from serve.nodekit import PHI, ct_files, wait_for
from serve.nodekit import send
from sdpm_cli.serve.config import Peer
from sdpm_cli.serve.events import key


@pytest.mark.slow
def test_the_model_processor_behind_the_node(node, pacs, series, tiny_model):
    from sdpm_cli.outputs.dicomseg import read_dicom_seg
    from sdpm_cli.serve.process import make_processor

    srv = node(forward=Peer("PACS", "127.0.0.1", pacs.port), process=make_processor(tiny_model, "cpu"))
    assert send(srv.port, series) == [0] * len(series)
    wait_for(lambda: len(pacs.received) >= 2, timeout=60, what="the SEG and the SR")
    uid = pydicom.dcmread(str(series[0])).StudyInstanceUID
    result = srv.config.out_dir / key(uid) / "result"
    assert {p.name for p in result.iterdir()} == {"seg.dcm", "sr.dcm", "mask.nii.gz", "report.json"}
    by_modality = {pydicom.dcmread(str(p), stop_before_pixels=True).Modality: p for p in pacs.received}
    assert set(by_modality) == {"SEG", "SR"} and len(pacs.received) == 2
    seg_file = by_modality["SEG"]
    seg = pydicom.dcmread(str(seg_file), stop_before_pixels=True)
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(str(series[0])).SeriesInstanceUID
    mask = sitk.ReadImage(str(result / "mask.nii.gz"))
    arr = sitk.GetArrayFromImage(mask)
    paths = ct_files(series[0].parent)
    want = np.stack([arr[mask.TransformPhysicalPointToIndex(
        tuple(float(v) for v in pydicom.dcmread(str(p), stop_before_pixels=True).ImagePositionPatient))[2]] for p in paths])
    assert (want > 0).any(), "the tiny model found nothing: the voxel check would be empty"
    assert np.array_equal(read_dicom_seg(seg_file, paths), want)
    report = (result / "report.json").read_text()
    assert json.loads(report)["model"]["name"] == "tiny-test"
    assert not any(s in report for s in PHI)
    from sdpm_cli.outputs.dicomsr import read_dicom_sr

    sr = read_dicom_sr(by_modality["SR"])
    assert sr["study_instance_uid"] == uid
    for name, v in json.loads(report)["volumes"].items():
        assert sr["volumes"][name]["volume_ml"] == pytest.approx(v["volume_ml"], abs=1e-6)
