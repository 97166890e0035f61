"""The text_to_image family: text prompts -> image; no input images."""

from omnigen.data.modules.base import X2IDataModule


class TextToImageDataModule(X2IDataModule):
    family = "text_to_image"
