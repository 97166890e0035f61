"""The few_shot family: k example pairs of a task, then a query of the same task, in one prompt.

Its sources may be of any family; each sample becomes a query once `few_shot.shots` earlier
samples of its task have been read (see omnigen.data.episodes).
"""

from omnigen.data.episodes import EpisodeBuilder
from omnigen.data.modules.base import X2IDataModule


class FewShotDataModule(X2IDataModule):
    family = "few_shot"

    def __init__(self, *args, few_shot: EpisodeBuilder | None = None, **kwargs) -> None:
        super().__init__(*args, few_shot=few_shot or EpisodeBuilder(), **kwargs)
