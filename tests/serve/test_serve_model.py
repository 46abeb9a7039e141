"""The production processor (`make_processor`: model loaded once, segment_study, SEG + report) behind
the node, over pynetdicom: the forwarded SEG is the written mask, voxel for voxel."""

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
    wait_for(lambda: pacs.received, timeout=60, what="the SEG")
    uid = pydicom.dcmread(str(series[0])).StudyInstanceUID
    result = srv.config.out_dir / key(uid) / "result"
    assert {p.name for p in result.iterdir()} == {"seg.dcm", "mask.nii.gz", "report.json"}
    seg = pydicom.dcmread(str(pacs.received[0]), stop_before_pixels=True)
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(str(series[0])).SeriesInstanceUID
    mask = sitk.ReadImage(str(result / "mask.nii.gz"))
    arr = sitk.GetArrayFromImage(mask)
    paths = ct_files(series[0].parent)
    want = np.stack([arr[mask.TransformPhysicalPointToIndex(
        tuple(float(v) for v in pydicom.dcmread(str(p), stop_before_pixels=True).ImagePositionPatient))[2]] for p in paths])
    assert (want > 0).any(), "the tiny model found nothing: the voxel check would be empty"
    assert np.array_equal(read_dicom_seg(pacs.received[0], paths), want)
    report = (result / "report.json").read_text()
    assert json.loads(report)["model"]["name"] == "tiny-test"
    assert not any(s in report for s in PHI)
