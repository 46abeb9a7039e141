"""Two scans of one patient: rigid registration, lesion matching, volume change and expansion calls.

`compare_studies(baseline, followup, model=...)` is the API behind `sdpm compare`; the maths are
pure functions in `change.py` (intervals, calls) and `match.py` (overlap groups), registration in
`register.py`, the JSON/CSV document in `report.py` and the side-by-side picture in `preview.py`.
"""

from sdpm_cli.compare.change import Call, ExpansionRules, VolumeChange, difference_interval
from sdpm_cli.compare.engine import (CompareOptions, Comparison, Scan, compare_scans, compare_studies,
                                     scan_from_labels, scan_from_segmentation)
from sdpm_cli.compare.register import Registration, RegistrationRules, register_rigid

__all__ = ["Call", "ExpansionRules", "VolumeChange", "difference_interval", "CompareOptions", "Comparison", "Scan",
           "compare_scans", "compare_studies", "scan_from_labels", "scan_from_segmentation", "Registration",
           "RegistrationRules", "register_rigid"]
