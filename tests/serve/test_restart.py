"""The node as a subprocess: SIGKILL mid-receive, mid-processing and after processing (before the
forward), restart on the same queue; each study is finished and forwarded exactly once. SIGTERM
stops it with exit code 0 (the fake-processor node and the real `sdpm serve`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom

from serve.nodekit import REPO, Receiver, check_seg, echo, free_port, send, wait_for
from sdpm_cli.serve.events import key

NODE = Path(__file__).with_name("fake_node.py")


class Node:
    """fake_node.py in a subprocess; stderr (the event lines) kept in a file."""

    def __init__(self, tmp: Path, port: int, forward: str = "", **env) -> None:
        self.out, self.port, self.forward, self.tmp = tmp / "out", port, forward, tmp
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "IDLE": "0.8", **{k: str(v) for k, v in env.items()}}
        self.proc = None
        self.runs = 0

    def start(self) -> "Node":
        self.runs += 1
        self.err = open(self.tmp / f"node{self.runs}.err", "w")
        args = [sys.executable, str(NODE), str(self.out), str(self.port)] + ([self.forward] if self.forward else [])
        self.proc = subprocess.Popen(args, cwd=REPO, env=self.env, stderr=self.err, stdout=subprocess.DEVNULL)
        this = self.tmp / f"node{self.runs}.err"
        wait_for(lambda: self.proc.poll() is not None or "serve: listening" in this.read_text(), timeout=30, what="the node")
        assert self.proc.poll() is None, self.text()
        return self

    def text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp.glob("node*.err")))

    def state(self, study_uid: str) -> str:
        p = self.out / key(study_uid) / "state.json"
        try:
            return json.loads(p.read_text())["state"]
        except (OSError, ValueError, KeyError):
            return ""

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.err.close()

    def term(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.err.close()
        return code


def _uid(paths) -> str:
    return pydicom.dcmread(str(paths[0]), stop_before_pixels=True).StudyInstanceUID


def test_killed_mid_receive_the_study_is_finished_after_a_restart(tmp_path, series, pacs):
    node = Node(tmp_path, free_port(), f"PACS@127.0.0.1:{pacs.port}", IDLE=3).start()
    assert send(node.port, series[:12]) == [0] * 12  # acknowledged = on disk
    node.kill()
    assert node.state(_uid(series)) == "receiving"
    node.start()
    assert send(node.port, series[10:]) == [0] * 14  # the sender resends from where it was cut (2 duplicates)
    wait_for(lambda: pacs.received, timeout=30, what="the SEG")
    wait_for(lambda: node.state(_uid(series)) == "forwarded", what="forwarded")
    assert node.term() == 0
    assert len(pacs.received) == 1
    check_seg(pacs.received[0], series)  # all 24 slices: the 12 from before the kill kept
    assert "study_resumed" in node.text() and "state=receiving" in node.text()


def test_killed_while_processing_the_study_is_processed_again(tmp_path, series, pacs):
    node = Node(tmp_path, free_port(), f"PACS@127.0.0.1:{pacs.port}", FAKE_DELAY=20).start()
    send(node.port, series)
    wait_for(lambda: node.state(_uid(series)) == "processing", what="processing")
    node.kill()
    node.env["FAKE_DELAY"] = "0"
    node.start()
    wait_for(lambda: node.state(_uid(series)) == "forwarded", timeout=30, what="forwarded")
    assert node.term() == 0
    assert len(pacs.received) == 1
    check_seg(pacs.received[0], series)


def test_killed_before_forwarding_the_results_are_sent_once(tmp_path, series):
    pacs_port = free_port()  # nothing listens there yet: the forward fails and is retried
    node = Node(tmp_path, free_port(), f"PACS@127.0.0.1:{pacs_port}", ATTEMPTS=100, BACKOFF=0.3).start()
    send(node.port, series)
    wait_for(lambda: "forward_retry" in node.text(), what="a failed forward")
    assert node.state(_uid(series)) == "processed"
    node.kill()
    rx = Receiver(tmp_path / "pacs", port=pacs_port)
    try:
        node.start()
        wait_for(lambda: node.state(_uid(series)) == "forwarded", timeout=30, what="forwarded")
        assert node.term() == 0
        node.start()  # a study marked forwarded is never sent again
        assert echo(node.port) == 0
        time.sleep(1.0)
        assert node.term() == 0
        assert len(rx.received) == 1
        check_seg(rx.received[0], series)
        assert node.text().count("study_processed") == 1  # processed once, across three runs
    finally:
        rx.close()


def test_sigterm_stops_the_real_command_with_exit_code_0(tmp_path, tiny_model):
    port = free_port()
    err = tmp_path / "serve.err"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "sdpm_cli", "serve", "--port", str(port), "--bind", "127.0.0.1",
                                 "--out-dir", str(tmp_path / "out"), "--model", str(tiny_model), "--device", "cpu",
                                 "--json-log", str(tmp_path / "ev.jsonl")],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=fh, stdout=subprocess.DEVNULL)
        try:
            wait_for(lambda: proc.poll() is not None or "serve: listening" in err.read_text(), timeout=60, what="serve")
            assert echo(port) == 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, err.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = err.read_text()
    assert "SIGTERM: stopping" in text and "serve: stopped" in text
    assert [json.loads(line)["event"] for line in (tmp_path / "ev.jsonl").read_text().splitlines()][-1] == "stopped"
