"""Test kit for the DICOM node: a fast fake processor (a real SEG from a threshold of the received
CT), a storage SCP standing in for the PACS, a C-STORE SCU, free ports and polling."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from ingest.dicom_factory import write_series  # noqa: E402,F401 - re-exported for the tests

PHI = ("Phantom^Test", "Phantom", "SDPM-TEST-001", "19500101", "ACC-SECRET-42", "Secret Hospital")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], object], timeout: float = 20.0, every: float = 0.05, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ------------------------------------------------------------------------------ the fake processor
def expected_mask(path: Path) -> np.ndarray:
    """The fake processor's label for one CT file: 2 (hemorrhage) where 60 < HU < 100."""
    ds = pydicom.dcmread(str(path))
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return (((hu > 60) & (hu < 100)) * 2).astype(np.uint8)


def ct_files(folder: Path) -> list[Path]:
    """The CT slices in `folder`, sorted along the slice normal."""
    out = []
    for p in sorted(Path(folder).glob("*.dcm")):
        ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        if ds.get("Modality") == "CT" and "ImagePositionPatient" in ds:
            iop = np.array(ds.ImageOrientationPatient, float)
            out.append((float(np.dot(np.cross(iop[:3], iop[3:]), np.array(ds.ImagePositionPatient, float))), p))
    return [p for _, p in sorted(out)]


def fake_process(study_dir: Path, result_dir: Path, copies: int = 1, delay: float = 0.0) -> list[Path]:
    """A real DICOM SEG of the received series, without the model: seconds, deterministic."""
    from sdpm_cli.outputs.dicomseg import write_dicom_seg

    if delay:
        time.sleep(delay)
    paths = ct_files(study_dir)
    ds = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in paths]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    n = np.cross(iop[:3], iop[3:])
    ipp0 = np.array(ds[0].ImagePositionPatient, float)
    dz = float(np.dot(np.array(ds[1].ImagePositionPatient, float) - ipp0, n)) if len(ds) > 1 else 1.0
    arr = np.stack([expected_mask(p) for p in paths])
    labels = sitk.GetImageFromArray(arr)
    labels.SetOrigin(tuple(ipp0))
    labels.SetSpacing((float(ds[0].PixelSpacing[1]), float(ds[0].PixelSpacing[0]), abs(dz)))
    labels.SetDirection(tuple(np.stack([iop[:3], iop[3:], n * np.sign(dz or 1)], axis=1).ravel()))
    out = []
    for k in range(copies):  # copies > 1: several results, for per-file forwarding checks
        out.append(write_dicom_seg(labels, paths, Path(result_dir) / f"seg{k or ''}.dcm", algorithm_name="fake"))
    return out


def processor_from_env() -> Callable[[Path, Path], list[Path]]:
    copies, delay = int(os.environ.get("FAKE_COPIES", "1")), float(os.environ.get("FAKE_DELAY", "0"))
    return lambda s, r: fake_process(s, r, copies=copies, delay=delay)


# ------------------------------------------------------------------------------ the PACS stand-in
class Receiver:
    """A storage SCP that keeps what it receives (in a folder and a list); `refuse_after` answers
    0xA700 to every store after that many, to cut a forwarding round short."""

    def __init__(self, folder: Path, ae_title: str = "PACS", port: int = 0, refuse_after: Optional[int] = None):
        from pynetdicom import AE, AllStoragePresentationContexts, ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.sop_class import Verification

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.received: list[Path] = []
        self.calling: list[str] = []
        self.refuse_after = refuse_after
        self._lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae = ae
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        with self._lock:
            if self.refuse_after is not None and len(self.received) >= self.refuse_after:
                return 0xA700
            ds = event.dataset
            ds.file_meta = event.file_meta
            p = self.folder / f"{len(self.received):03d}_{ds.SOPInstanceUID}.dcm"
            ds.save_as(str(p), enforce_file_format=True)
            self.received.append(p)
            self.calling.append(str(event.assoc.requestor.ae_title).strip())
        return 0x0000

    def close(self) -> None:
        self.ae.shutdown()


def send(port: int, paths: Sequence[Path], calling: str = "TESTSCU", called: str = "SDPM") -> list[int]:
    """C-STORE files to the node over one association; the status of each (-1: no response)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "association refused"
    try:
        return [int(getattr(assoc.send_c_store(pydicom.dcmread(str(p))), "Status", -1)) for p in paths]
    finally:
        assoc.release()


def echo(port: int, calling: str = "TESTSCU", called: str = "SDPM") -> Optional[int]:
    """C-ECHO status, or None when the association is rejected."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return None
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def seg_of(received: Sequence[Path]) -> list[Path]:
    return [p for p in received if pydicom.dcmread(str(p), stop_before_pixels=True).Modality == "SEG"]


def check_seg(seg_path: Path, sent: Sequence[Path]) -> None:
    """The SEG references the sent series and study and decodes voxel-exact to the fake mask."""
    from sdpm_cli.outputs.dicomseg import read_dicom_seg

    seg = pydicom.dcmread(str(seg_path), stop_before_pixels=True)
    src = pydicom.dcmread(str(sent[0]), stop_before_pixels=True)
    assert seg.StudyInstanceUID == src.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    refs = {str(r.ReferencedSOPInstanceUID) for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == {str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID) for p in sent}
    want = np.stack([expected_mask(p) for p in sent])
    assert (want == 2).any(), "the phantom has no voxel in the fake threshold: the check would be empty"
    assert np.array_equal(read_dicom_seg(seg_path, list(sent)), want)
