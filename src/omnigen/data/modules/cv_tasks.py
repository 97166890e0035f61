"""The cv_tasks family: one image -> its low-level restoration (deblur, derain, denoise, inpaint, outpaint,
colourise, low-light) or high-level map (edges, depth, pose, segmentation, referring highlight)."""

from omnigen.data.modules.base import X2IDataModule


class CvTasksDataModule(X2IDataModule):
    family = "cv_tasks"
