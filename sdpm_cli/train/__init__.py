"""Training stage: data from nnU-Net folders or CSVs, augmentation, the loop (EMA, poly lr, exact resume), DDP.

    from sdpm_cli.train import TrainConfig, train
    result = train(TrainConfig(data="Dataset001", out="model.pt", steps=2000))
"""

from sdpm_cli.train.augment import AugmentConfig
from sdpm_cli.train.loop import EMA, TrainConfig, TrainResult, poly_lr, train

__all__ = ["TrainConfig", "TrainResult", "train", "poly_lr", "EMA", "AugmentConfig"]
