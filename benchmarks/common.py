"""Shared helpers for the benchmark scripts: run a command, measure wall time and peak RAM."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> Measured:
    """Run `cmd` as a child; peak RSS is that child's own (os.wait4 rusage), wall time includes start-up."""
    import tempfile

    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return Measured(wall, usage.ru_maxrss / 1024.0, proc.returncode, fo.read(), fe.read())


def machine_description() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        desc["torch"] = torch.__version__
        desc["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            desc["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return desc


def sdpm(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdpm_cli", *args]


def dump(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
