"""Exceptions that map to the documented exit codes.

Every failure a user can cause or meet is raised as one of these with a one-line message; the CLI
prints that line and exits with the class's code (tracebacks only with --debug).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_MODEL = 4
EXIT_RUNTIME = 5
EXIT_PARTIAL = 6  # batch: some studies failed, others succeeded


class SdpmError(Exception):
    """Base class: a failure with a one-line, user-facing reason."""

    exit_code = EXIT_RUNTIME


class UsageError(SdpmError):
    """Bad arguments or an output that exists without --force."""

    exit_code = EXIT_USAGE


class InputRejected(SdpmError):
    """The study (or mask) is not something we can measure safely."""

    exit_code = EXIT_INPUT


class ModelError(SdpmError):
    """Missing, corrupt, foreign or unsafe checkpoint."""

    exit_code = EXIT_MODEL


class RuntimeFailure(SdpmError):
    """Anything else that went wrong while running (out of memory, device failure...)."""

    exit_code = EXIT_RUNTIME
