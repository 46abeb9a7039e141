"""The C-STORE SCU that sends a study's results to the destination, one association per round.

Each file is recorded as forwarded (by the caller's `on_sent`) as soon as the destination answers
Success or a warning, so a round cut short by a failure or a kill re-sends only the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from sdpm_cli.serve.config import Peer

# C-STORE statuses that mean "stored" (PS3.4 B.2.3): success and the warnings (coercion, elements discarded)
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class ForwardError(Exception):
    """The destination could not be reached or refused a file (one line, no identifiers)."""


def send_files(peer: Peer, calling_aet: str, files: Sequence[Path], on_sent: Callable[[Path], None],
               timeout_s: float = 30.0) -> int:
    """C-STORE every file to `peer` over one association; returns how many were sent."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    datasets = []
    for p in files:
        try:
            datasets.append((p, pydicom.dcmread(str(p))))
        except Exception as exc:  # noqa: BLE001 - a result that cannot be read is a processor bug, named
            raise ForwardError(f"cannot read result {Path(p).name}: {type(exc).__name__}") from None
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    syntaxes: dict[str, list[str]] = {}
    for _, ds in datasets:  # each file goes in its own transfer syntax (a compressed preview stays so)
        own = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ExplicitVRLittleEndian)
        ts = syntaxes.setdefault(str(ds.SOPClassUID), [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        if own not in ts:
            ts.insert(0, own)
    for sop_class, ts in sorted(syntaxes.items()):
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no connection"
        raise ForwardError(f"association with {peer} failed ({why})")
    sent = 0
    try:
        for p, ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code not in STORED:
                raise ForwardError(f"{peer} answered C-STORE of {Path(p).name} with "
                                   + (f"status 0x{code:04X}" if code >= 0 else "no response"))
            on_sent(p)
            sent += 1
    finally:
        if assoc.is_established:
            assoc.release()
    return sent
