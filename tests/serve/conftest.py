"""Fixtures for the DICOM node tests: a synthetic CT series, a PACS stand-in, a node in a thread."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from serve.nodekit import Receiver, fake_process, write_series


@pytest.fixture
def series(tmp_path) -> list[Path]:
    """24 axial CT slices (40 x 56) with a 65 HU 'bleed' the fake processor labels."""
    return write_series(tmp_path / "ct")


@pytest.fixture
def pacs(tmp_path):
    rx = Receiver(tmp_path / "pacs")
    yield rx
    rx.close()


@pytest.fixture
def node(tmp_path):
    """node(**config) -> a started Server (fake processor by default) with its event lines in .lines."""
    from sdpm_cli.serve.config import ServeConfig
    from sdpm_cli.serve.events import EventLog
    from sdpm_cli.serve.server import Server

    with contextlib.ExitStack() as stack:
        def make(process=fake_process, out_dir=None, **kw):
            kw = {"port": 0, "idle_s": 0.4, "forward_backoff_s": 0.05, "forward_attempts": 2, "forward_timeout_s": 5,
                  "json_log": tmp_path / "events.jsonl", **kw}
            cfg = ServeConfig(out_dir=out_dir or tmp_path / "out", bind="127.0.0.1", **kw)
            lines: list[str] = []
            srv = Server(cfg, process, EventLog(cfg.json_log, echo=lines.append))
            srv.lines = lines
            srv.start()
            stack.callback(srv.log.close)
            stack.callback(srv.stop)
            return srv

        yield make
