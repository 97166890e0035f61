"""Few-shot episodes: k example pairs of a task, then the query, as one interleaved prompt.

An example contributes its instruction (placeholders renumbered after the images before it)
and its output image as one more input image; the query's placeholders come last:

    example: <img><|image_1|></img> make the red circle green result: <img><|image_2|></img>
    query: <img><|image_3|></img> make the blue square red
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterator

from omnigen.data.schema import Skipped, X2ISample
from omnigen.processor import IMAGE_TAG

EXAMPLE_TEMPLATE = "example: {instruction} result: {output}"
QUERY_TEMPLATE = "query: {instruction}"


def renumber(instruction: str, offset: int) -> str:
    """Shift every <|image_i|> to <|image_{i + offset}|>."""
    return IMAGE_TAG.sub(lambda m: f"<|image_{int(m.group(1)) + offset}|>", instruction)


def make_episode(
    examples: list[X2ISample],
    query: X2ISample,
    example_template: str = EXAMPLE_TEMPLATE,
    query_template: str = QUERY_TEMPLATE,
) -> X2ISample:
    """One sample whose instruction shows `examples` (input images, instruction, output) before `query`."""
    parts, images = [], []
    for example in examples:
        instruction = renumber(example.instruction, len(images))
        images += example.input_images
        images.append(example.output_image)
        output = f"<img><|image_{len(images)}|></img>"
        parts.append(example_template.format(instruction=instruction, output=output))
    offset = len(images)
    parts.append(query_template.format(instruction=renumber(query.instruction, offset)))
    return X2ISample(
        instruction=" ".join(parts),
        input_images=images + query.input_images,
        output_image=query.output_image,
        family="few_shot",
        task=query.task,
        key=f"{query.key} with examples {', '.join(e.key for e in examples)}",
        spec=query.spec,
        edit_source=None if query.edit_source is None else query.edit_source + offset,
        notes=query.notes + [n for e in examples for n in e.notes],
    )


class EpisodeBuilder:
    """Turns a stream of samples into episodes: each sample becomes a query once `shots` earlier
    samples of its task have been seen (the most recent ones are its examples); until then it only
    fills the pool. Nothing is dropped unseen: pooled-only samples are counted as
    `few_shot_warmup` in `stats`."""

    def __init__(self, shots: int = 1, pool_size: int = 8) -> None:
        if shots < 1 or pool_size < shots:
            raise ValueError(
                f"few-shot needs shots >= 1 and pool_size >= shots, got shots={shots}, pool_size={pool_size}"
            )
        self.shots, self.pool_size = shots, pool_size

    def __call__(self, records: Iterator[X2ISample | Skipped], stats: Counter[str]) -> Iterator[X2ISample | Skipped]:
        pools: dict[str, deque[X2ISample]] = defaultdict(lambda: deque(maxlen=self.pool_size))
        for record in records:
            if isinstance(record, Skipped):
                yield record
                continue
            pool = pools[record.task]
            if len(pool) >= self.shots:
                yield make_episode(list(pool)[-self.shots :], record)
            else:
                stats["few_shot_warmup"] += 1
            pool.append(record)
