"""Against a real PACS: Orthanc (Debian's package) sends a study to the node over DICOM, the node
segments it (fake processor) and sends the SEG back to Orthanc, which files it in the same study.
Skips where Orthanc is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pydicom
import pytest

from serve.nodekit import check_seg, free_port, wait_for
from sdpm_cli.serve.config import Peer

ORTHANC = shutil.which("Orthanc")
pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed (apt install orthanc)")


class Rest:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: bytes | None = None, timeout: float = 30):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
        return data if path.endswith("/file") else json.loads(data or b"null")


@pytest.fixture
def orthanc(tmp_path):
    """Orthanc on loopback with free ports, its storage in tmp_path, the node as modality 'sdpm'."""
    http, dicom, node_port = free_port(), free_port(), free_port()
    cfg = {
        "Name": "sdpm-test", "StorageDirectory": str(tmp_path / "orthanc-db"), "IndexDirectory": str(tmp_path / "orthanc-db"),
        "HttpPort": http, "DicomPort": dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "Plugins": [],
        "DicomModalities": {"sdpm": ["SDPM", "127.0.0.1", node_port]},
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(cfg, indent=1))
    log = open(tmp_path / "orthanc.log", "w")
    proc = subprocess.Popen([ORTHANC, str(tmp_path / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    rest = Rest(http)

    def up():
        if proc.poll() is not None:
            raise AssertionError("Orthanc exited: " + (tmp_path / "orthanc.log").read_text()[-2000:])
        try:
            return rest.call("GET", "/system", timeout=2)
        except (urllib.error.URLError, OSError):
            return None

    try:
        wait_for(up, timeout=30, every=0.2, what="Orthanc's REST API")
        rest.dicom_port, rest.node_port = dicom, node_port
        yield rest
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_orthanc_sends_a_study_and_receives_the_seg(orthanc, node, series, tmp_path):
    study_ids = {orthanc.call("POST", "/instances", p.read_bytes())["ParentStudy"] for p in series}
    assert len(study_ids) == 1
    study = study_ids.pop()
    srv = node(port=orthanc.node_port, allow=("ORTHANC",), forward=Peer("ORTHANC", "127.0.0.1", orthanc.dicom_port))
    assert srv.port == orthanc.node_port
    orthanc.call("POST", "/modalities/sdpm/echo", b"{}")  # C-ECHO from Orthanc (HTTP error if it fails)
    orthanc.call("POST", "/modalities/sdpm/store", json.dumps({"Resources": [study], "Synchronous": True}).encode(),
                 timeout=60)

    def seg_series():
        found = [s for s in orthanc.call("GET", f"/studies/{study}/series?expand")
                 if s["MainDicomTags"].get("Modality") == "SEG"]
        return found or None

    found = wait_for(seg_series, timeout=30, every=0.3, what="the SEG in Orthanc")
    assert len(found) == 1 and len(found[0]["Instances"]) == 1
    data = orthanc.call("GET", f"/instances/{found[0]['Instances'][0]}/file")
    seg_path = tmp_path / "from-orthanc-seg.dcm"
    seg_path.write_bytes(data)
    check_seg(seg_path, series)
    (st,) = srv.queue.studies.values()
    assert (pydicom.dcmread(str(seg_path), stop_before_pixels=True).SOPInstanceUID
            == pydicom.dcmread(str(st.result / "seg.dcm"), stop_before_pixels=True).SOPInstanceUID)
    wait_for(lambda: any(e["event"] == "study_forwarded" for e in srv.log.history), what="the forwarded event")
    assert [e["calling_aet"] for e in srv.log.history if e["event"] in ("echo", "study_receiving")] == ["ORTHANC"] * 2


@pytest.mark.slow
def test_orthanc_round_trip_with_the_engine_returns_seg_and_sr(orthanc, node, series, tiny_model, tmp_path):
    """The production processor (the engine; a tiny model) behind the node: Orthanc receives the SEG
    and the SR in the CT's study; the SEG is the written mask voxel for voxel, the SR holds the
    report's volumes and references the SEG and the source series."""
    import numpy as np
    import SimpleITK as sitk

    from sdpm_cli.outputs.dicomseg import read_dicom_seg
    from sdpm_cli.outputs.dicomsr import read_dicom_sr
    from sdpm_cli.serve.process import make_processor

    study = {orthanc.call("POST", "/instances", p.read_bytes())["ParentStudy"] for p in series}.pop()
    srv = node(port=orthanc.node_port, allow=("ORTHANC",), forward=Peer("ORTHANC", "127.0.0.1", orthanc.dicom_port),
               process=make_processor(tiny_model, "cpu"))
    orthanc.call("POST", "/modalities/sdpm/store", json.dumps({"Resources": [study], "Synchronous": True}).encode(),
                 timeout=60)

    def results():
        got = {s["MainDicomTags"].get("Modality"): s for s in orthanc.call("GET", f"/studies/{study}/series?expand")}
        return got if {"SEG", "SR"} <= set(got) else None

    got = wait_for(results, timeout=60, every=0.3, what="the SEG and SR in Orthanc")
    files = {}
    for modality in ("SEG", "SR"):
        assert len(got[modality]["Instances"]) == 1
        files[modality] = tmp_path / f"{modality}.dcm"
        files[modality].write_bytes(orthanc.call("GET", f"/instances/{got[modality]['Instances'][0]}/file"))
    (st,) = srv.queue.studies.values()
    mask = sitk.ReadImage(str(st.result / "mask.nii.gz"))
    arr = sitk.GetArrayFromImage(mask)
    paths = sorted(series, key=lambda p: float(pydicom.dcmread(str(p), stop_before_pixels=True).ImagePositionPatient[2]))
    want = np.stack([arr[mask.TransformPhysicalPointToIndex(
        tuple(float(v) for v in pydicom.dcmread(str(p), stop_before_pixels=True).ImagePositionPatient))[2]] for p in paths])
    assert np.array_equal(read_dicom_seg(files["SEG"], paths), want)
    sr = read_dicom_sr(files["SR"])
    src = pydicom.dcmread(str(series[0]), stop_before_pixels=True)
    assert sr["study_instance_uid"] == src.StudyInstanceUID
    evidence = json.dumps(sr["evidence"])
    assert pydicom.dcmread(str(files["SEG"]), stop_before_pixels=True).SOPInstanceUID in evidence
    assert src.SeriesInstanceUID in evidence
    report = json.loads((st.result / "report.json").read_text())
    for name, v in report["volumes"].items():
        assert sr["volumes"][name]["volume_ml"] == pytest.approx(v["volume_ml"], abs=1e-6)
