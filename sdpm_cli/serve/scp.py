"""The pynetdicom handlers of the node's SCP side.

C-STORE answers Success only once the instance is durable (written to a temporary, fsynced, renamed,
folder fsynced); disk full, a bound exceeded or a closed study are answered with a failure status,
and every failure is an event, never an exception out of the handler. Nothing identifying is logged:
study keys are hashes, and the only text from the peer is its AE title.
"""

from __future__ import annotations

import io
from typing import Callable

from sdpm_cli.serve.queue import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS, DiskQueue, durable_write

Log = Callable[..., dict]


def encode_instance(event) -> bytes:
    """The received dataset as a DICOM file (preamble, file meta, the dataset's bytes as sent):
    no decode and re-encode, so what is stored is exactly what the sender sent."""
    from pydicom.filewriter import write_file_meta_info

    buf = io.BytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, event.file_meta, enforce_standard=True)
    buf.write(event.request.DataSet.getvalue())
    return buf.getvalue()


def calling_aet(event) -> str:
    try:
        return str(event.assoc.requestor.ae_title).strip()
    except AttributeError:
        return "?"


def make_store_handler(queue: DiskQueue, log: Log) -> Callable:
    def handle_store(event) -> int:
        try:
            sop_uid = str(event.request.AffectedSOPInstanceUID)
            study_uid = str(getattr(event.dataset, "StudyInstanceUID", "") or "")
            data = encode_instance(event)
        except Exception as exc:  # noqa: BLE001 - an undecodable dataset is a status, not a crash
            log("store_refused", status=f"0x{CANNOT_UNDERSTAND:04X}", reason=f"undecodable dataset ({type(exc).__name__})",
                calling_aet=calling_aet(event))
            return CANNOT_UNDERSTAND
        if not study_uid or not sop_uid:
            log("store_refused", status=f"0x{CANNOT_UNDERSTAND:04X}", reason="no StudyInstanceUID or SOPInstanceUID",
                calling_aet=calling_aet(event))
            return CANNOT_UNDERSTAND
        try:
            ticket = queue.begin_store(study_uid, sop_uid, len(data))
        except OSError as exc:
            log("store_failed", status=f"0x{OUT_OF_RESOURCES:04X}", reason=exc.strerror or type(exc).__name__)
            return OUT_OF_RESOURCES
        st = ticket.study
        if ticket.status != SUCCESS:
            log("store_refused", study=st.key if st else "", status=f"0x{ticket.status:04X}", reason=ticket.reason)
            return ticket.status
        if ticket.duplicate:
            return SUCCESS
        if ticket.new_study:
            log("study_receiving", study=st.key, calling_aet=calling_aet(event))
        try:
            durable_write(ticket.path, data)
        except OSError as exc:  # disk full, read-only, quota: the sender keeps the instance and may retry
            queue.end_store(ticket, ok=False)
            log("store_failed", study=st.key, status=f"0x{OUT_OF_RESOURCES:04X}", reason=exc.strerror or type(exc).__name__)
            return OUT_OF_RESOURCES
        if not queue.end_store(ticket, ok=True):
            log("store_refused", study=st.key, status=f"0x{OUT_OF_RESOURCES:04X}", reason="study refused while storing")
            return OUT_OF_RESOURCES
        return SUCCESS

    return handle_store


def make_handlers(queue: DiskQueue, log: Log, allow: tuple[str, ...]) -> list:
    """(event, handler) pairs for AE.start_server."""
    from pynetdicom import evt

    def handle_echo(event) -> int:
        log("echo", calling_aet=calling_aet(event))
        return SUCCESS

    def handle_rejected(event) -> None:
        aet = calling_aet(event)
        reason = "calling AE title not allowed" if allow and aet not in allow else "too many associations"
        log("association_rejected", calling_aet=aet, reason=reason)

    return [(evt.EVT_C_ECHO, handle_echo), (evt.EVT_C_STORE, make_store_handler(queue, log)),
            (evt.EVT_REJECTED, handle_rejected)]
