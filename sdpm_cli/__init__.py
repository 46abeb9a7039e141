"""sdpm: stroke lesion segmentation and volumetry on non-contrast head CT.

Data flows DICOM -> ingest -> preprocess -> model -> postprocess -> outputs; each stage is a
subpackage with a small Python API, and `sdpm_cli.cli` is a thin Typer layer over them.
"""

__version__ = "0.1.0"
