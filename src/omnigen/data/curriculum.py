"""A training curriculum: stages of (steps, image size, batch size, lr, optional task mix) in one fit.

The paper trains 256² → 512² → 1024² → 2240² → mixed resolutions, each stage with its own batch
size and learning rate (Table 1). Here one `Curriculum` object is read by three parts of a run,
all as pure functions of the global step, so a resumed run lands in the right stage:

- the DataModule's stream: image size, batch size and task mix of each batch;
- the lr schedule (`omnigen.training.optim.warmup_cosine(curriculum=...)`): the stage's lr as base lr;
- `omnigen.callbacks.curriculum.CurriculumCallback`: logs the stage and samples a grid at every stage
  boundary.

It lives with the data because the DataModules read it; the lr schedule and the callback read it from above.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    steps: int
    image_size: int  # the resolution's `size` (square side, raw maximum or bucket scale)
    batch_size: int  # per process and micro-batch
    lr: float
    mix: dict[str, float] | None = None  # family ratios of a mixture DataModule; None keeps its own
    resolution_mode: str | None = None  # "square" | "raw" | "buckets"; None keeps the DataModule's
    name: str = ""


class Curriculum:
    def __init__(self, stages: list[Stage | dict[str, Any]]) -> None:
        self.stages = [s if isinstance(s, Stage) else Stage(**s) for s in stages]
        if not self.stages:
            raise ValueError("a curriculum needs at least one stage")
        for i, s in enumerate(self.stages):
            if s.steps < 1 or s.image_size < 1 or s.batch_size < 1 or s.lr < 0:
                raise ValueError(
                    f"stage {i} ({s.name or 'unnamed'}) needs steps, image_size, batch_size >= 1 and lr >= 0, got {s}"
                )
        self.starts = [0]
        for s in self.stages[:-1]:
            self.starts.append(self.starts[-1] + s.steps)

    @property
    def total_steps(self) -> int:
        return self.starts[-1] + self.stages[-1].steps

    def index_at(self, step: int) -> int:
        """The stage of optimizer step `step`; past the end, the last stage."""
        return bisect.bisect_right(self.starts, step) - 1

    def stage_at(self, step: int) -> Stage:
        return self.stages[self.index_at(step)]

    def __repr__(self) -> str:
        return (
            "Curriculum("
            + ", ".join(
                f"{s.name or i}: {s.steps}×{s.batch_size}@{s.image_size}px lr {s.lr:g}"
                for i, s in enumerate(self.stages)
            )
            + ")"
        )
