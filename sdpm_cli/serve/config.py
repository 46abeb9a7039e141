"""The node's settings, fixed at start (frozen), and the parsers for the options that need one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sdpm_cli.errors import UsageError

_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE: 16 chars of the default repertoire, no backslash


def check_ae_title(value: str, what: str = "AE title") -> str:
    """An AE title as DICOM allows it (1-16 printable characters, not all spaces, no backslash)."""
    v = value.strip()
    if not v or not _AET.match(v):
        raise UsageError(f"{what} must be 1-16 printable characters without backslash, got '{value}'")
    return v


@dataclass(frozen=True)
class Peer:
    """A remote DICOM node: AE title, host, port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_peer(spec: str, option: str = "--forward") -> Peer:
    """AET@HOST:PORT -> Peer; a one-line UsageError for anything else."""
    m = re.match(r"^([^@]+)@(\[[^\]]+\]|[^:@]+):(\d+)$", spec.strip())
    if not m:
        raise UsageError(f"{option} must be AET@HOST:PORT, got '{spec}'")
    port = int(m.group(3))
    if not 1 <= port <= 65535:
        raise UsageError(f"{option}: port must be 1-65535, got {port}")
    return Peer(check_ae_title(m.group(1), f"{option} AE title"), m.group(2).strip("[]"), port)


def parse_allow(spec: Optional[str]) -> tuple[str, ...]:
    """'A,B' -> ('A', 'B'); None or '' -> () (every calling AE title is accepted)."""
    if not spec:
        return ()
    return tuple(check_ae_title(v, "--allow AE title") for v in spec.split(",") if v.strip())


@dataclass(frozen=True)
class ServeConfig:
    """Everything the node needs; see docs/SERVE.md for each field's option."""

    out_dir: Path
    port: int = 11112
    ae_title: str = "SDPM"
    bind: str = "0.0.0.0"
    forward: Optional[Peer] = None
    idle_s: float = 30.0  # a study is complete when nothing arrived for this long
    allow: tuple[str, ...] = ()  # calling AE titles accepted; () = any
    json_log: Optional[Path] = None
    max_associations: int = 10
    max_instances: int = 5000  # per study
    max_study_mb: float = 4096.0  # per study, bytes as stored
    forward_attempts: int = 5  # per forwarding round, with exponential backoff
    forward_backoff_s: float = 2.0  # first wait; doubles each attempt
    forward_timeout_s: float = 30.0  # network/ACSE/DIMSE timeouts of the forwarding SCU
    poll_s: float = 0.2  # how often the worker looks for complete studies

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:  # 0: any free port (tests)
            raise UsageError(f"--port must be 1-65535, got {self.port}")
        check_ae_title(self.ae_title, "--ae-title")
        for name, v in (("--idle", self.idle_s), ("--max-associations", self.max_associations),
                        ("--max-instances", self.max_instances), ("--max-study-mb", self.max_study_mb)):
            if not v > 0:
                raise UsageError(f"{name} must be positive, got {v}")
