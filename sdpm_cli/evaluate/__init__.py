"""Evaluation: segmentation and volumetry metrics, and the reports of `sdpm evaluate`.

metrics.py  pure numpy metrics (Dice, IoU, HD95, volume, VC, VDP, Bland-Altman, lesion detection)
scoring.py  per-case rows per class and their aggregation per mode
cases.py    finding cases (prediction/truth folders, nnU-Net raw folders, CSV) and reading labels safely
runner.py   evaluate_folders / evaluate_dataset: cases -> scored rows (writes nothing)
report.py   per_case.csv, summary.json, table1.md and the PNG plots (atomic)
"""

from sdpm_cli.evaluate.metrics import (  # noqa: F401  (the public metric API)
    bland_altman,
    dice,
    hd95,
    iou,
    lesion_detection,
    pearson_vc,
    vdp,
    volume_ml,
)
