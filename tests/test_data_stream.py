"""The training stream and the family DataModules: resolution, buckets, few-shot, mixture, skips, sharding."""

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from omnigen.data.episodes import EpisodeBuilder, make_episode, renumber
from omnigen.data.modules import (
    CvTasksDataModule,
    FewShotDataModule,
    MixedModalDataModule,
    MixtureDataModule,
    SubjectDrivenDataModule,
    TextToImageDataModule,
    VisualConditionDataModule,
)
from omnigen.data.modules.base import DataAccounting, TokenBudget
from omnigen.data.resolution import Resolution, cover_crop
from omnigen.data.schema import BadSample, Skipped, X2ISample, validate
from omnigen.data.sources.base import Source
from omnigen.data.sources.shapes import ShapesSource
from omnigen.processor import OmniGenProcessor


def image(w, h, colour=(200, 10, 10)):
    return Image.new("RGB", (w, h), colour)


class ListSource(Source):
    """Records in a fixed order; part p of n gets records i with i % n == p."""

    def __init__(self, records, name="list"):
        self.records, self.name = records, name

    def __len__(self):
        return len(self.records)

    def read(self, part=0, num_parts=1, epoch=0, shuffle=False, seed=0) -> Iterator:
        order = (
            np.random.default_rng([seed, epoch]).permutation(len(self.records)) if shuffle else range(len(self.records))
        )
        for j, i in enumerate(order):
            if j % num_parts == part:
                yield self.records[i]


def t2i(i, w=32, h=32):
    return X2ISample(f"a red circle number {i}", [], image(w, h), "text_to_image", "t2i", f"list:{i}")


def edit(i, n_inputs=1):
    tags = " ".join(f"<img><|image_{k + 1}|></img>" for k in range(n_inputs))
    return X2ISample(
        f"{tags} make it green",
        [image(32, 32)] * n_inputs,
        image(32, 32),
        "mixed_modal",
        "edit",
        f"edit:{i}",
        edit_source=0,
    )


def batches(module, limit=1000):
    out = []
    for batch in module.train_dataloader():
        batch["data_stats"] = module.accounting.update(batch["data_stats"])
        out.append(batch)
        if len(out) == limit:
            break
    return out


def test_resolution_modes_put_every_image_on_the_token_grid():
    square = Resolution("square", size=32, multiple=4)
    assert square.output_size(100, 50) == (32, 32)
    raw = Resolution("raw", size=64, multiple=16)
    assert raw.output_size(100, 50) == (32, 64)  # 64 × 32 after scaling, on the 16-pixel grid
    assert raw.output_size(40, 30) == (16, 32)  # never scaled up; floored to the grid
    buckets = Resolution("buckets", size=64, multiple=16)
    assert all(h % 16 == 0 and w % 16 == 0 and h * w <= 64 * 64 for h, w in buckets.buckets())
    assert buckets.output_size(200, 100) == (48, 80)  # nearest to 1:2 once floored to the grid: 9:16 -> 48×80
    assert buckets.output_size(100, 100) == (64, 64) and buckets.output_size(100, 200) == (80, 48)
    sample = Resolution("square", size=32, max_input_size=24, multiple=8).apply(
        X2ISample("<img><|image_1|></img> x", [image(50, 30)], image(64, 48), "mixed_modal", "edit", "k")
    )
    assert sample.output_image.size == (32, 32) and sample.input_images[0].size == (24, 8)  # 24×14 -> crop to 24×8
    crop = cover_crop(Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).convert("RGB"), 6, 4)
    assert np.array(crop)[0, 0, 0] == 2  # centre crop: columns 2..5 of the unscaled image
    with pytest.raises(BadSample, match="smaller than one token"):
        Resolution("square", size=32, multiple=8).apply(
            X2ISample("<img><|image_1|></img> x", [image(5, 30)], image(32, 32), "mixed_modal", "edit", "k")
        )
    with pytest.raises(ValueError, match="resolution mode"):
        Resolution("tiles")


def test_buckets_give_batches_of_one_size_and_keep_every_sample():
    shapes = [(64, 32), (32, 64), (48, 48), (64, 30), (30, 64), (50, 50)] * 5
    records = [t2i(i, w, h) for i, (w, h) in enumerate(shapes)]
    module = TextToImageDataModule(
        [ListSource(records)], batch_size=4, shuffle=False, resolution=Resolution("buckets", size=48, multiple=8)
    )
    out = batches(module)
    assert all(b["output_image"].shape[0] <= 4 for b in out)
    assert sorted(k for b in out for k in b["key"]) == sorted(r.key for r in records)  # nothing dropped
    sizes = {tuple(b["output_image"].shape[-2:]) for b in out}
    assert len(sizes) == 3 and all(h % 8 == 0 and w % 8 == 0 for h, w in sizes)  # wide, tall, square buckets


def test_few_shot_renumbers_placeholders_after_the_examples_images():
    assert (
        renumber("<img><|image_1|></img> and <img><|image_2|></img>", 3)
        == "<img><|image_4|></img> and <img><|image_5|></img>"
    )
    ex = [edit(0), edit(1, n_inputs=2)]
    query = edit(2, n_inputs=2)
    query.edit_source = 1
    episode = make_episode(ex, query)
    assert episode.instruction == (
        "example: <img><|image_1|></img> make it green result: <img><|image_2|></img> "
        "example: <img><|image_3|></img> <img><|image_4|></img> make it green result: <img><|image_5|></img> "
        "query: <img><|image_6|></img> <img><|image_7|></img> make it green"
    )
    assert episode.input_images == [
        ex[0].input_images[0],
        ex[0].output_image,
        *ex[1].input_images,
        ex[1].output_image,
        *query.input_images,
    ]
    assert episode.output_image is query.output_image and episode.edit_source == 6 and episode.family == "few_shot"
    validate(episode)  # placeholders 1..7 match the 7 images


def test_few_shot_datamodule_builds_episodes_of_one_task_and_counts_the_warm_up():
    records = [edit(i) for i in range(6)] + [t2i(i) for i in range(6, 9)]
    module = FewShotDataModule(
        [ListSource(records)],
        batch_size=2,
        shuffle=False,
        few_shot=EpisodeBuilder(shots=2),
        resolution=Resolution("square", 32, multiple=4),
    )
    out = batches(module)
    episodes = [text for b in out for text in b["instruction"]]
    assert len(episodes) == 4 + 1  # 6 edits - 2 warm-up, 3 t2i - 2 warm-up
    assert all(text.count("example:") == 2 for text in episodes)
    assert out[-1]["data_stats"]["few_shot_warmup"] == 4


def test_mixture_realises_its_ratios_and_logs_them():
    members = {
        "a": TextToImageDataModule([ListSource([t2i(i) for i in range(7)])]),
        "b": MixedModalDataModule([ListSource([edit(i) for i in range(5)])]),
    }
    module = MixtureDataModule(
        members, {"a": 0.8, "b": 0.2}, batch_size=20, resolution=Resolution("square", 32, multiple=4)
    )
    out = batches(module, limit=100)  # 2000 samples, sources cycled many times
    mix = out[-1]["data_stats"]
    assert mix["mix/a"] == pytest.approx(0.8, abs=0.03) and mix["mix/b"] == pytest.approx(0.2, abs=0.03)
    realised = Counter(f for b in out for f in b["family"])
    assert realised["mixed_modal"] / 2000 == pytest.approx(mix["mix/b"], abs=0.01)  # the log tells the batches' mix
    with pytest.raises(ValueError, match="must name exactly"):
        MixtureDataModule(members, {"a": 1.0})


def test_bad_records_are_counted_logged_and_stop_the_run_past_the_limit(caplog):
    records = [
        t2i(0),
        Skipped("corrupt_image", "f.jsonl:2", "f.jsonl:2: output image x.png cannot be decoded"),
        t2i(2),
        Skipped("missing_image", "f.jsonl:4", "f.jsonl:4: no such file y.png"),
        t2i(4),
    ]
    module = TextToImageDataModule(
        [ListSource(records)], batch_size=8, shuffle=False, resolution=Resolution("square", 32, multiple=4)
    )
    stats = batches(module)[-1]["data_stats"]
    assert stats["skipped_corrupt_image"] == 1 and stats["skipped_missing_image"] == 1
    assert stats["skipped_fraction"] == pytest.approx(2 / 5)
    assert "no such file y.png" in caplog.text
    accounting = DataAccounting(max_skip_fraction=0.1, min_records=5)
    with pytest.raises(RuntimeError, match=r"2 of 5 records skipped \(40.0%\).*corrupt_image: 1.*y.png"):
        accounting.update(
            {
                "counts": {"samples": 3, "skipped_corrupt_image": 1, "skipped_missing_image": 1},
                "messages": ["f.jsonl:4: no such file y.png"],
            }
        )
    strict = TextToImageDataModule(
        [ListSource(records)],
        batch_size=8,
        shuffle=False,
        on_bad="error",
        resolution=Resolution("square", 32, multiple=4),
    )
    with pytest.raises(BadSample, match="f.jsonl:2: output image x.png cannot be decoded"):
        batches(strict)


def test_families_check_their_input_counts_and_reject_other_families(tokenizer):
    res = Resolution("square", 32, multiple=4)
    module = TextToImageDataModule(
        [ListSource([t2i(0), edit(1)], name="mine")], batch_size=4, shuffle=False, resolution=res
    )
    with pytest.raises(ValueError, match="source 'mine' gives 'mixed_modal' samples .edit:1. to the 'text_to_image'"):
        batches(module)
    t2i_with_image = X2ISample(
        "<img><|image_1|></img> a red circle", [image(32, 32)], image(32, 32), "text_to_image", "t2i", "x:1"
    )
    module = TextToImageDataModule([ListSource([t2i(0), t2i_with_image])], batch_size=4, shuffle=False, resolution=res)
    assert batches(module)[-1]["data_stats"]["skipped_wrong_family"] == 1
    one = X2ISample(
        "<img><|image_1|></img> a scene", [image(32, 32)], image(32, 32), "visual_condition", "canny", "v:0"
    )
    two = X2ISample(
        "<img><|image_1|></img> <img><|image_2|></img> a scene",
        [image(32, 32)] * 2,
        image(32, 32),
        "visual_condition",
        "canny",
        "v:1",
    )
    module = VisualConditionDataModule([ListSource([two, one])], shuffle=False, resolution=res)
    assert batches(module)[-1]["data_stats"]["skipped_wrong_family"] == 1
    # over the processor's token limit: a counted skip, not a crash in the training step
    module = TextToImageDataModule(
        [ListSource([t2i(0), X2ISample("red " * 40, [], image(32, 32), "text_to_image", "t2i", "long:1")])],
        shuffle=False,
        resolution=res,
    )
    module.checker = TokenBudget(OmniGenProcessor(tokenizer, max_condition_tokens=30), 4)
    out = batches(module)
    assert out[-1]["data_stats"]["skipped_too_many_tokens"] == 1 and [k for b in out for k in b["key"]] == ["list:0"]


def test_two_ranks_by_two_workers_see_every_sample_exactly_once():
    source = ShapesSource({"text_to_image": 1.0}, image_size=16, seed=0, length=40)
    keys = []
    for rank in range(2):
        module = TextToImageDataModule(
            [source], batch_size=3, num_workers=2, shuffle=True, resolution=Resolution("square", 16, multiple=4)
        )
        stream = module.stream()
        stream.rank, stream.world_size = rank, 2
        for batch in DataLoader(stream, batch_size=None, num_workers=2):
            keys += batch["key"]
    assert len(keys) == 40 and set(keys) == {f"shapes:{i}" for i in range(40)}


@pytest.mark.parametrize(
    "module_class, family",
    [
        (TextToImageDataModule, "text_to_image"),
        (MixedModalDataModule, "mixed_modal"),
        (SubjectDrivenDataModule, "subject_driven"),
        (VisualConditionDataModule, "visual_condition"),
        (CvTasksDataModule, "cv_tasks"),
    ],
)
def test_each_family_datamodule_batches_its_shapes_family(module_class, family):
    module = module_class(
        [ShapesSource({family: 1.0}, image_size=32, seed=0, length=8)],
        batch_size=4,
        resolution=Resolution("square", 32, multiple=4),
    )
    out = batches(module)
    assert len(out) == 2 and out[0]["output_image"].shape == (4, 3, 32, 32)
    assert set(out[0]["family"]) == {family} and out[-1]["data_stats"]["skipped_fraction"] == 0.0
    assert torch.all(out[0]["output_image"].abs() <= 1)
    previews = module.preview_samples(3)
    assert len(previews) == 3 and previews[0]["output_image"].shape == (3, 32, 32)
