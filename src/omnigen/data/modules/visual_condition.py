"""The visual_condition family: one condition map (canny, HED, depth, skeleton, bbox, segmentation) -> image."""

from omnigen.data.modules.base import X2IDataModule


class VisualConditionDataModule(X2IDataModule):
    family = "visual_condition"
