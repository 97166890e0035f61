"""The mixed_modal family: any instruction + input images -> image (editing, try-on, style, motion)."""

from omnigen.data.modules.base import X2IDataModule


class MixedModalDataModule(X2IDataModule):
    family = "mixed_modal"
