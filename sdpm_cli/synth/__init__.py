"""Synthetic head NCCT studies with exact infarct/hemorrhage truth (training, tests and demos).

Public API (the trainer and benchmarks rely on these names):
    SynthConfig, SynthCase, generate_case(seed, cfg) -> SynthCase, write_dataset(out_dir, n_cases, seed, ...)
"""

from sdpm_cli.synth.config import SynthConfig, case_seed
from sdpm_cli.synth.generate import LABEL_RULE, SynthCase, generate_case

__all__ = ["SynthConfig", "SynthCase", "generate_case", "case_seed", "write_dataset", "LABEL_RULE"]


def __getattr__(name):  # write_dataset pulls in the writers (pydicom) only when used
    if name == "write_dataset":
        from sdpm_cli.synth.dataset import write_dataset

        return write_dataset
    raise AttributeError(name)
