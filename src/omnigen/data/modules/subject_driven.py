"""The subject_driven family: reference image(s) of a subject -> a new scene with it."""

from omnigen.data.modules.base import X2IDataModule


class SubjectDrivenDataModule(X2IDataModule):
    family = "subject_driven"
