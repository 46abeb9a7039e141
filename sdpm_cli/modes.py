"""The inference modes, defined once (torch-free, so the CLI can validate options before importing it).

`out` is the default: on the validation phantoms of both families `salient` and `infer` (fast
preset) equal `out` within noise, and `union` (their voxel-wise OR) costs 17 network calls per
slice for a lower Dice (models/MODEL_CARD.md, "Do the modes differ?"). `union` stays an option.
"""

MODES = ("out", "salient", "infer", "union")
DEFAULT_MODE = "out"
UNION_PARTS = MODES[:3]  # the modes `union` runs and ORs ("out", "salient", "infer")
