"""Preprocess stage: brain mask, window, model grid, and the exact inverse back to the native grid.

See docs/ARCHITECTURE.md ("Preprocess") for the contract the pipeline and trainer rely on.
"""

from sdpm_cli.preprocess.brainmask import brain_mask, brain_mask_array
from sdpm_cli.preprocess.grid import ModelGrid, to_model_array, to_native_array
from sdpm_cli.preprocess.plan import PreprocessPlan
from sdpm_cli.preprocess.prepare import (
    Prepared,
    label_to_model,
    labels_from_probs,
    prepare,
    probs_to_native,
    to_native,
)
from sdpm_cli.preprocess.window import apply_window, undo_window

__all__ = [
    "ModelGrid",
    "PreprocessPlan",
    "Prepared",
    "apply_window",
    "undo_window",
    "brain_mask",
    "brain_mask_array",
    "label_to_model",
    "labels_from_probs",
    "prepare",
    "probs_to_native",
    "to_model_array",
    "to_native",
    "to_native_array",
]
