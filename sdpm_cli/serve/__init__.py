"""`sdpm serve`: a DICOM node that receives CT studies (C-STORE SCP), segments each complete study
once and forwards the results (SEG, SR) to a PACS. Library code: it never imports the command line.

config  - the frozen settings (ServeConfig) and the --forward/--allow parsers
queue   - the on-disk queue: one folder and one atomic state file per study
events  - the event log (one line on stderr, JSON lines to a file), free of patient identifiers
scp     - the pynetdicom handlers: C-ECHO, C-STORE (durable before acknowledged), rejections
forward - the C-STORE SCU that sends results, file by file, with retries
server  - Server: the SCP plus one worker thread; run_until_signalled for SIGTERM/SIGINT
process - make_processor: the production processor (model loaded once)
"""
