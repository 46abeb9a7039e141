"""`sdpm serve`: a DICOM node (C-ECHO / C-STORE SCP) that segments each complete study once and
forwards the SEG to a PACS. The node itself is the library package sdpm_cli.serve; this is its
command line (docs/SERVE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import info, warn
from sdpm_cli.errors import UsageError


@app.command("serve", help="Run a DICOM node: receive CT studies, segment each complete study, forward SEG to a PACS.")
@guarded
def serve_cmd(
    port: int = typer.Option(11112, "--port", help="DICOM port to listen on."),
    ae_title: str = typer.Option("SDPM", "--ae-title", help="This node's AE title."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Queue and outputs: one folder per study (hashed key)."),
    forward: Optional[str] = typer.Option(None, "--forward", help="Send results to AET@HOST:PORT (retried with backoff)."),
    idle: float = typer.Option(30.0, "--idle", help="A study is complete when no instance arrived for this many seconds."),
    allow: Optional[str] = typer.Option(None, "--allow", help="Accept associations only from these calling AE titles (AET1,AET2)."),
    json_log: Optional[Path] = typer.Option(None, "--json-log", help="Append events as JSON lines to this file."),
    max_associations: int = typer.Option(10, "--max-associations", help="Concurrent associations accepted."),
    max_instances: int = typer.Option(5000, "--max-instances", help="Instances per study; more refuses the study."),
    max_study_mb: float = typer.Option(4096.0, "--max-study-mb", help="Size per study (MB); more refuses the study."),
    bind: str = typer.Option("0.0.0.0", "--bind", help="Address to listen on (127.0.0.1: this host only)."),
    mode: str = opt.mode(),
    model: Optional[Path] = opt.model(),
    device: str = opt.device(),
    threads: int = opt.threads(),
    seed: int = opt.seed(),
) -> None:
    from sdpm_cli.serve.config import ServeConfig, parse_allow, parse_peer
    from sdpm_cli.serve.events import EventLog
    from sdpm_cli.serve.process import make_processor
    from sdpm_cli.serve.server import Server, run_until_signalled

    opt.start_run(mode, threads)
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be 1-65535, got {port}")
    cfg = ServeConfig(out_dir=out_dir, port=port, ae_title=ae_title, bind=bind,
                      forward=parse_peer(forward) if forward else None, idle_s=idle, allow=parse_allow(allow),
                      json_log=json_log, max_associations=max_associations, max_instances=max_instances,
                      max_study_mb=max_study_mb)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir is not a folder: {out_dir}")
    from sdpm_cli.outputs.atomic import check_folder_writable

    check_folder_writable(out_dir / "probe")
    if json_log is not None:
        check_folder_writable(json_log)
    process = make_processor(model, device, mode=mode, seed=seed, warn=warn)
    server = Server(cfg, process, EventLog(json_log, echo=info))
    raise typer.Exit(run_until_signalled(server, on_stop=lambda sig: info(f"serve: {sig}: stopping")))
