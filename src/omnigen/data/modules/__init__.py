from omnigen.data.modules.base import X2IDataModule
from omnigen.data.modules.cv_tasks import CvTasksDataModule
from omnigen.data.modules.few_shot import FewShotDataModule
from omnigen.data.modules.mixed_modal import MixedModalDataModule
from omnigen.data.modules.mixture import MixtureDataModule
from omnigen.data.modules.subject_driven import SubjectDrivenDataModule
from omnigen.data.modules.text_to_image import TextToImageDataModule
from omnigen.data.modules.visual_condition import VisualConditionDataModule

__all__ = [
    "CvTasksDataModule",
    "FewShotDataModule",
    "MixedModalDataModule",
    "MixtureDataModule",
    "SubjectDrivenDataModule",
    "TextToImageDataModule",
    "VisualConditionDataModule",
    "X2IDataModule",
]
