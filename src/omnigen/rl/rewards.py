"""Rewards for reward fine-tuning, from the programmatic Shapes-X2I metrics (omnigen.metrics.score).

A reward is a weighted mean of terms per family (or per `family/task`, which wins over its family: the
classic CV tasks each have their own metrics); a term is a product of metrics:

    reward = sum_i w_i * prod_j m_ij / sum_i w_i

so a sample whose every named metric is 1 (the ground truth) scores exactly 1, and 0 is the least. A
product pays for two things at once, which an edit needs: `edit_correct × unchanged_score` pays for the
edit and for keeping the rest, so neither copying the input (edit_correct 0) nor wiping the scene to
make "remove" true (unchanged_score near 0) is rewarded; a sum would pay each alone. PSNR-like metrics
enter through their [0, 1] scores (`unchanged_score` = min(1, PSNR / 40)).

    rewards = ShapesReward({
        "mixed_modal": [{"weight": 1.0, "product": ["edit_correct", "unchanged_score"]},
                        {"weight": 0.5, "product": ["target_exact_scene"]}],
        "text_to_image": [{"weight": 1.0, "product": ["exact_scene"]}],
    })
    value, metrics = rewards("mixed_modal", "edit", spec, pixels)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnigen.data.shapes.tasks import sample_at
from omnigen.metrics import FAMILIES, score
from omnigen.utils.cli import UserError, did_you_mean

# Where the metric names are read from: ground-truth samples of the family, scored (see known_metrics).
PROBE_SEED, PROBE_SIZE, PROBE_SAMPLES = 0, 32, 200


@dataclass(frozen=True)
class Term:
    weight: float
    product: tuple[str, ...]  # metric names, multiplied


class ShapesReward:
    """{family or family/task: [{"weight": w, "product": [metric, ...]}, ...]} -> a reward in [0, 1] per
    generated image. Every metric is checked against what the scorer returns when the reward is built
    (for a family key, a metric every task of the family has), so a misspelt metric fails at once, by
    name; a metric outside [0, 1] (a PSNR in dB) is refused."""

    def __init__(self, terms: dict[str, list[dict[str, Any]]]) -> None:
        if not terms:
            raise UserError("a reward needs terms for at least one family (e.g. mixed_modal, text_to_image)")
        self.terms: dict[str, list[Term]] = {}
        for key, entries in terms.items():
            family, _, task = key.partition("/")
            if family not in FAMILIES:
                raise UserError(f"reward: unknown family {family!r}{did_you_mean(family, FAMILIES)}")
            if not entries:
                raise UserError(f"reward.{key}: no terms")
            by_task = known_metrics(family)
            if task and task not in by_task:
                raise UserError(f"reward: {family} has no task {task!r}{did_you_mean(task, by_task)}")
            known = by_task[task] if task else frozenset.intersection(*by_task.values())
            self.terms[key] = [parse_term(key, i, entry, known) for i, entry in enumerate(entries)]

    def terms_for(self, family: str, task: str) -> list[Term]:
        terms = self.terms.get(f"{family}/{task}") or self.terms.get(family)
        if terms is None:
            raise UserError(f"reward: no terms for {family}/{task} (rewarded: {', '.join(self.terms)})")
        return terms

    def __call__(
        self, family: str, task: str, spec: dict[str, Any], generated: np.ndarray
    ) -> tuple[float, dict[str, float]]:
        """(reward, every metric of the sample) for one (H, W, 3) uint8 image of a sample of `family`."""
        terms = self.terms_for(family, task)
        metrics = score(family, task, spec, generated)
        return combine(terms, metrics), metrics

    def score_batch(self, samples: list[RolloutSample], images: list[np.ndarray]) -> tuple[list[float], list[dict]]:
        """(reward, metrics) of each (H, W, 3) uint8 image of each sample: the interface every reward plugin has."""
        scored = [self(s.family, s.task, s.spec, image) for s, image in zip(samples, images, strict=True)]
        return [value for value, _ in scored], [metrics for _, metrics in scored]


@dataclass(frozen=True)
class RolloutSample:
    """What a reward may read of a generated sample's prompt: Shapes-X2I's family, task and scene spec
    (programmatic rewards) and the instruction (learned rewards)."""

    family: str
    task: str
    spec: dict[str, Any]
    instruction: str


def combine(terms: list[Term], metrics: dict[str, float]) -> float:
    total = sum(term.weight for term in terms)
    return sum(term.weight * math.prod(metrics[name] for name in term.product) for term in terms) / total


def parse_term(key: str, index: int, entry: dict[str, Any], known: frozenset[str]) -> Term:
    where = f"reward.{key}[{index}]"
    if set(entry) - {"weight", "product"} or "product" not in entry:
        raise UserError(f"{where}: a term is {{weight: W, product: [METRIC, ...]}}, got {dict(entry)}")
    weight, product = float(entry.get("weight", 1.0)), tuple(entry["product"])
    if weight <= 0 or not product:
        raise UserError(f"{where}: a term needs a weight > 0 and at least one metric, got {dict(entry)}")
    for name in product:
        if name not in known:
            raise UserError(f"{where}: {key} has no metric {name!r}{did_you_mean(name, known)}")
        if name.endswith("psnr"):
            scores = [s for s in (name.removesuffix("psnr") + "score", name + "_score") if s in known]
            hint = f": use {scores[0]!r}, its [0, 1] score" if scores else ""
            raise UserError(f"{where}: {name!r} is in dB, not in [0, 1]{hint}")
    return Term(weight, product)


@functools.cache  # a pure function of the family: every reward built in a process reads it once
def known_metrics(family: str) -> dict[str, frozenset[str]]:
    """task -> the metric names the family's scorer returns for it, read off ground-truth samples."""
    by_task: dict[str, set[str]] = {}
    for index in range(PROBE_SAMPLES):
        sample = sample_at(index, PROBE_SEED, {family: 1.0}, PROBE_SIZE)
        by_task.setdefault(sample.task, set()).update(
            score(family, sample.task, sample.spec, np.asarray(sample.output_image))
        )
    return {task: frozenset(names) for task, names in by_task.items()}
