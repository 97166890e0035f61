"""Helpers shared by the Shapes-X2I tests."""

from __future__ import annotations

import itertools

import numpy as np

from omnigen.data.shapes import (
    FAMILIES,
    Scene,
    ShapeSpec,
    ShapesSample,
    sample_at,
)

MIX = {family: 1.0 for family in FAMILIES}
CHAT = "<|user|>\n{instruction}<|end|>\n<|assistant|>\n"


def make_scene(*shapes: tuple[str, str, str, str], background: str = "white") -> Scene:
    return Scene(background=background, shapes=tuple(ShapeSpec(*s) for s in shapes))


def task_sample(family: str, task: str, size: int, seed: int = 3, skip: int = 0) -> ShapesSample:
    """The (skip + 1)-th sample of `task` in a fixed single-family stream."""
    for index in itertools.count():
        sample = sample_at(index, seed, {family: 1.0}, size)
        if sample.task == task:
            if skip == 0:
                return sample
            skip -= 1
    raise AssertionError("unreachable")


def edit_sample(kind: str, size: int) -> ShapesSample:
    return task_sample("mixed_modal", f"edit/{kind}", size)


def outside(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a[~mask], b[~mask]))
