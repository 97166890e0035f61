"""The Shapes-X2I DataModule: batches the module can train on, ratios, held-out previews."""

import pytest

from omnigen.data.collate import collate_samples
from omnigen.data.modules.shapes import ShapesX2IDataModule, ShapesX2IDataset


def test_loader_yields_training_batches():
    dm = ShapesX2IDataModule(
        families={"text_to_image": 0.5, "mixed_modal": 0.5}, image_size=32, batch_size=16, seed=0, length=64
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["output_image"].shape == (16, 3, 32, 32)
    assert batch["output_image"].min() >= -1 and batch["output_image"].max() <= 1
    for text, images, task in zip(batch["instruction"], batch["input_images"], batch["task"], strict=True):
        if task == "t2i":
            assert images == [] and "<|image_" not in text
        else:
            assert task.startswith("edit/") and len(images) == 1 and images[0].shape == (3, 32, 32)
            assert text.startswith("<img><|image_1|></img>")


def test_dataset_is_a_pure_function_of_seed_and_index():
    a = ShapesX2IDataset({"text_to_image": 1.0, "mixed_modal": 1.0}, 32, seed=3, length=10)
    b = ShapesX2IDataset({"text_to_image": 1.0, "mixed_modal": 1.0}, 32, seed=3, length=10)
    assert a[7].output_image.tobytes() == b[7].output_image.tobytes() and a[7].instruction == b[7].instruction
    c = ShapesX2IDataset({"text_to_image": 1.0, "mixed_modal": 1.0}, 32, seed=4, length=10)
    assert any(a[i].instruction != c[i].instruction for i in range(10))


def test_family_ratio_zero_is_never_drawn_and_previews_are_held_out():
    dm = ShapesX2IDataModule(families={"text_to_image": 0.0, "mixed_modal": 1.0}, length=200)
    assert all(dm.train_set[i].family == "mixed_modal" for i in range(50))
    previews = dm.preview_samples(4)
    assert [p["family"] for p in previews] == ["mixed_modal"] * 4
    assert previews[0]["instruction"] == dm.preview_samples(4)[0]["instruction"]
    train_texts = {dm.train_set[i].instruction for i in range(200)}
    assert sum(p["instruction"] in train_texts for p in previews) <= 1  # drawn from another stream


def test_a_curriculum_draws_the_same_samples_at_each_stages_resolution():
    from PIL import Image

    from omnigen.data.curriculum import Curriculum

    stages = [
        {"name": "16px", "steps": 2, "image_size": 16, "batch_size": 4, "lr": 1e-3},
        {"name": "32px", "steps": 2, "image_size": 32, "batch_size": 4, "lr": 1e-3},
    ]
    families = {"text_to_image": 0.5, "mixed_modal": 0.5}
    staged = ShapesX2IDataModule(families, image_size=32, batch_size=4, length=64, curriculum=Curriculum(stages))
    plain = ShapesX2IDataModule(families, image_size=32, batch_size=4, length=64)
    batches = [b for b, _ in zip(staged.train_dataloader(), range(4), strict=False)]
    assert [b["output_image"].shape[-1] for b in batches] == [16, 16, 32, 32]
    assert all(
        im.shape[-1] == b["output_image"].shape[-1] for b in batches for images in b["input_images"] for im in images
    )
    for index in (0, 7, 8, 15):  # steps 0 and 1 at 16², 2 and 3 at 32²: the same samples either way
        small, full = staged.train_set[index], plain.train_set[index]
        assert small.instruction == full.instruction
        size = 16 if index < 8 else 32
        expected = (
            full.output_image.resize((size, size), Image.BICUBIC, reducing_gap=None)
            if size == 16
            else full.output_image
        )
        assert small.output_image.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="keep the batch size"):
        ShapesX2IDataModule(families, batch_size=8, length=64, curriculum=Curriculum(stages))


def test_bad_families_and_mixed_sizes_are_named():
    with pytest.raises(ValueError, match="unknown Shapes-X2I family .video."):
        ShapesX2IDataset({"text_to_image": 1.0, "video": 1.0}, 32, 0, 10)
    with pytest.raises(ValueError, match="positive sum"):
        ShapesX2IDataset({"text_to_image": 0.0}, 32, 0, 10)
    a = ShapesX2IDataset({"text_to_image": 1.0}, 32, 0, 2)[0]
    b = ShapesX2IDataset({"text_to_image": 1.0}, 64, 0, 2)[0]
    with pytest.raises(ValueError, match="one output size"):
        collate_samples([a, b])


def test_stream_sampler_splits_ranks_and_resumes_where_all_ranks_stopped():
    from omnigen.data.modules.shapes import StreamSampler

    ranks = [list(StreamSampler(0, 20, rank, 2)) for rank in range(2)]
    assert ranks == [list(range(0, 20, 2)), list(range(1, 20, 2))]
    # 2 steps of batch 3 on 2 ranks consumed 12 samples: each rank continues with its own next index
    resumed = [list(StreamSampler(12, 20, rank, 2)) for rank in range(2)]
    assert [r[:2] for r in resumed] == [[12, 14], [13, 15]] and resumed[0] == ranks[0][6:] and len(resumed[1]) == 4
