"""Lesion classes shared by every stage (label values in masks, channels in the network)."""

CLASSES: dict[int, str] = {1: "infarct", 2: "hemorrhage"}
NUM_CLASSES = len(CLASSES)
