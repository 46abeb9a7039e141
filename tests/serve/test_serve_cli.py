"""`sdpm serve` options: malformed values are one-line usage errors (exit 2) before anything starts."""

from __future__ import annotations

import pytest

from sdpm_cli.errors import UsageError
from sdpm_cli.serve.config import Peer, ServeConfig, parse_allow, parse_peer


def test_parse_peer_and_allow():
    assert parse_peer("PACS@10.0.0.5:104") == Peer("PACS", "10.0.0.5", 104)
    assert parse_peer("ORTHANC@[::1]:4242") == Peer("ORTHANC", "::1", 4242)
    for bad in ("PACS", "PACS@host", "@host:104", "PACS@host:0", "PACS@host:99999", "A\\B@h:1", "WAYTOOLONGAETITLE1@h:1"):
        with pytest.raises(UsageError):
            parse_peer(bad)
    assert parse_allow("A, B,") == ("A", "B") and parse_allow(None) == ()
    with pytest.raises(UsageError):
        ServeConfig(out_dir="x", idle_s=0)


@pytest.mark.parametrize("args, message", [
    (["--forward", "PACS-at-host"], "--forward must be AET@HOST:PORT"),
    (["--forward", "PACS@host:70000"], "port must be 1-65535"),
    (["--idle", "0"], "--idle must be positive"),
    (["--port", "0"], "--port must be 1-65535"),
    (["--allow", "A,WAYTOOLONGAETITLE1"], "--allow AE title"),
    (["--mode", "nonsense"], "unknown mode"),
])
def test_bad_options_are_one_line_usage_errors(run_cli, tmp_path, args, message):
    code, out, err = run_cli("serve", "--out-dir", tmp_path / "out", *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_out_dir_that_is_a_file_is_refused(run_cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_cli("serve", "--out-dir", f)
    assert code == 2 and "not a folder" in err


def test_a_port_in_use_and_a_bad_model_are_one_line_errors(run_cli, tmp_path, tiny_model):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run_cli("serve", "--out-dir", tmp_path / "out", "--bind", "127.0.0.1", "--port", port,
                               "--model", tiny_model, "--device", "cpu")
    assert code == 2 and "cannot listen on" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run_cli("serve", "--out-dir", tmp_path / "out", "--model", bad)
    assert code == 4 and "Traceback" not in err
