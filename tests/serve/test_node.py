"""The node in a thread, over pynetdicom: receive -> complete -> process -> forward, C-ECHO, --allow,
bounds, late and duplicate instances, per-file forwarding, processor failures, disk full."""

from __future__ import annotations

import errno
import json

import pydicom
import pytest

from serve.nodekit import PHI, Receiver, check_seg, echo, fake_process, send, wait_for
from sdpm_cli.serve import queue as q
from sdpm_cli.serve.config import Peer
from sdpm_cli.serve.events import key


def to(rx) -> Peer:
    return Peer("PACS", "127.0.0.1", rx.port)


def state(srv, study_uid: str) -> dict:
    return json.loads((srv.config.out_dir / key(study_uid) / "state.json").read_text())


def events(srv, name: str) -> list[dict]:
    return [e for e in srv.log.history if e["event"] == name]


def test_a_study_is_segmented_once_and_its_seg_forwarded(node, pacs, series, tmp_path):
    srv = node(forward=to(pacs))
    assert send(srv.port, series) == [0] * len(series)
    wait_for(lambda: pacs.received, what="the forwarded SEG")
    uid = pydicom.dcmread(str(series[0])).StudyInstanceUID
    wait_for(lambda: state(srv, uid)["state"] == q.FORWARDED, what="forwarded state")
    wait_for(lambda: events(srv, "study_forwarded"), what="the forwarded event")  # logged just after the state
    assert len(pacs.received) == 1 and pacs.calling == ["SDPM"]
    check_seg(pacs.received[0], series)
    folder = srv.config.out_dir / key(uid)
    assert len(list((folder / "received").glob("*.dcm"))) == len(series)
    assert (folder / "result" / "seg.dcm").is_file() and not (folder / "result.tmp").exists()
    assert [e["event"] for e in srv.log.history][-5:] == [
        "study_receiving", "study_complete", "study_processing", "study_processed", "study_forwarded"]
    assert events(srv, "study_complete")[0]["instances"] == len(series)
    # nothing identifying anywhere in the logs or the folder names (UIDs appear only hashed)
    srv.stop()
    text = "\n".join(srv.lines) + (tmp_path / "events.jsonl").read_text()
    names = " ".join(str(p) for p in srv.config.out_dir.rglob("*"))
    for secret in PHI + (uid, pydicom.dcmread(str(series[0])).SeriesInstanceUID):
        assert secret not in text and secret not in names, secret
    assert all(json.loads(line)["event"] for line in (tmp_path / "events.jsonl").read_text().splitlines())


def test_echo_and_the_allow_list(node):
    srv = node(allow=("PACS", "ORTHANC"))
    assert echo(srv.port, calling="ORTHANC") == 0
    assert echo(srv.port, calling="INTRUDER") is None  # association rejected
    rej = wait_for(lambda: events(srv, "association_rejected"), what="rejection event")
    assert rej[0]["calling_aet"] == "INTRUDER" and rej[0]["reason"] == "calling AE title not allowed"
    assert events(srv, "echo")[0]["calling_aet"] == "ORTHANC"


def test_too_many_associations_are_rejected(node):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    srv = node(max_associations=1)
    ae = AE(ae_title="FIRST")
    ae.add_requested_context(Verification)
    held = ae.associate("127.0.0.1", srv.port, ae_title="SDPM")
    try:
        assert held.is_established
        assert echo(srv.port, calling="SECOND") is None
        rej = wait_for(lambda: events(srv, "association_rejected"), what="rejection event")
        assert rej[0]["reason"] == "too many associations"
    finally:
        held.release()
    assert wait_for(lambda: echo(srv.port) == 0, what="a free association again")


@pytest.mark.parametrize("bound", [dict(max_instances=5), dict(max_study_mb=0.03)])
def test_a_study_over_a_bound_is_refused_not_processed(node, pacs, series, bound):
    srv = node(forward=to(pacs), **bound)
    statuses = send(srv.port, series)
    k = statuses.index(q.OUT_OF_RESOURCES)
    assert 0 < k < len(series) and statuses[:k] == [0] * k and set(statuses[k:]) == {q.OUT_OF_RESOURCES}
    uid = pydicom.dcmread(str(series[0])).StudyInstanceUID
    st = state(srv, uid)
    assert st["state"] == q.REFUSED and "more than" in st["reason"]
    assert not (srv.config.out_dir / key(uid) / "received").exists()  # the partial study is dropped
    assert events(srv, "store_refused")[0]["status"] == "0xA700"
    assert echo(srv.port) == 0  # still serving
    assert not pacs.received and not events(srv, "study_processing")


def test_duplicates_are_acknowledged_and_late_instances_refused(node, pacs, series, tmp_path):
    from serve.nodekit import write_series

    srv = node(forward=to(pacs))
    send(srv.port, series)
    uid = pydicom.dcmread(str(series[0])).StudyInstanceUID
    wait_for(lambda: state(srv, uid)["state"] == q.FORWARDED)
    assert send(srv.port, series[:3]) == [0, 0, 0]  # a resend of stored instances: success, nothing new
    late = write_series(tmp_path / "late", n_slices=2, series_number=7)  # same study, new instances
    assert send(srv.port, late) == [q.STUDY_CLOSED] * 2
    import time

    time.sleep(1.0)
    assert len(pacs.received) == 1 and len(events(srv, "study_processing")) == 1


def test_a_forward_cut_short_resends_only_the_missing_files(node, series, tmp_path):
    flaky = Receiver(tmp_path / "flaky", refuse_after=1)
    try:
        srv = node(forward=to(flaky), process=lambda s, r: fake_process(s, r, copies=2))
        send(srv.port, series)
        wait_for(lambda: events(srv, "forward_failed"), what="the forward to give up")
        uid = pydicom.dcmread(str(series[0])).StudyInstanceUID
        st = state(srv, uid)
        assert st["state"] == q.PROCESSED and len(st["results"]) == 2 and len(st["forwarded"]) == 1
        srv.stop()
    finally:
        flaky.close()
    good = Receiver(tmp_path / "good")
    try:
        srv2 = node(forward=to(good))  # a restart on the same queue
        wait_for(lambda: state(srv2, uid)["state"] == q.FORWARDED, what="the rest forwarded")
        assert len(good.received) == 1
        missing = set(st["results"]) - set(st["forwarded"])
        want = pydicom.dcmread(str(srv2.config.out_dir / key(uid) / missing.pop())).SOPInstanceUID
        assert pydicom.dcmread(str(good.received[0])).SOPInstanceUID == want
        assert not events(srv2, "study_processing")  # results are not remade: their UIDs are fixed
    finally:
        good.close()


def test_a_failing_processor_is_recorded_and_the_node_goes_on(node, pacs, series, tmp_path):
    from serve.nodekit import write_series

    calls = []

    def process(study_dir, result_dir):
        calls.append(study_dir)
        if len(calls) == 1:
            raise ValueError("no usable CT series")
        return fake_process(study_dir, result_dir)

    srv = node(forward=to(pacs), process=process)
    send(srv.port, series)
    wait_for(lambda: events(srv, "study_failed"), what="the failure")
    uid = pydicom.dcmread(str(series[0])).StudyInstanceUID
    assert state(srv, uid)["state"] == q.FAILED and "no usable CT series" in state(srv, uid)["reason"]
    other = write_series(tmp_path / "ct2", study_uid="1.2.826.0.1.3680043.8.498.2")
    send(srv.port, other)
    wait_for(lambda: pacs.received, what="the second study's SEG")
    check_seg(pacs.received[0], other)


def test_disk_full_is_a_failure_status_not_a_crash(node, series, monkeypatch):
    from sdpm_cli.serve import scp

    srv = node()

    def full(dest, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scp, "durable_write", full)
    assert send(srv.port, series[:2]) == [q.OUT_OF_RESOURCES] * 2
    assert events(srv, "store_failed")[0]["reason"] == "No space left on device"
    monkeypatch.undo()
    assert send(srv.port, series[:2]) == [0, 0]  # the sender's retry succeeds once there is room
