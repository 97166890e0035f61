"""`python -m omnigen.evaluate` on a tiny checkpoint, and the same metrics as a callback during a fit."""

import json

import pytest
from hydra_utils import FAST, compose_fit

from omnigen.evaluate import main
from omnigen.fit import train
from omnigen.metrics import FAMILIES


def test_evaluate_writes_json_markdown_and_examples(fitted_checkpoint, tmp_path):
    results = main(
        [
            f"ckpt={fitted_checkpoint}",
            "samples_per_family=2",
            "num_inference_steps=2",
            "batch_size=2",
            f"out={tmp_path}",
            "wandb=true",
            "guidance_interval=[0,1]",  # guidance at every step, as without it
            "shift_reference_size=16",  # the uniform schedule's shift 1 at 16², so 2 at 32²
        ]
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"] == results and saved["settings"]["image_size"] == 32
    assert saved["settings"]["guidance_interval"] == [0, 1]
    assert set(results) == set(FAMILIES) | {"per_task"}
    assert results["text_to_image"]["n"] == 2 and 0 <= results["text_to_image"]["exact_scene"] <= 1
    assert "edit_correct" in results["mixed_modal"] and "unchanged_psnr" in results["mixed_modal"]
    assert "## cv_tasks" in (tmp_path / "results.md").read_text() and (tmp_path / "examples.png").is_file()
    assert (
        "guidance only for t in [0.0, 1.0], the shift scaled from a 16-pixel side"
        in (tmp_path / "results.md").read_text()
    )
    tasks = results["per_task"]
    assert all(task.split("/")[0] in FAMILIES for task in tasks) and "text_to_image/t2i" in tasks
    assert "| text_to_image/t2i | 2 |" in (tmp_path / "results.md").read_text()
    assert list((tmp_path / "wandb").glob("offline-run-*"))  # the W&B table went to an offline run
    with pytest.raises(SystemExit, match="unknown suite"):
        main([f"ckpt={fitted_checkpoint}", "suite=coco"])
    with pytest.raises(ValueError, match="no Shapes-X2I metrics for .'few_shot'."):
        main([f"ckpt={fitted_checkpoint}", "families=[few_shot]", f"out={tmp_path}/x"])
    with pytest.raises(SystemExit, match="missing ckpt"):
        main([f"out={tmp_path}/y"])


def test_the_ground_truth_scores_the_ceiling_of_every_metric(tmp_path):
    """The targets scored as if generated: every score 1, every PSNR the 100 dB cap (the reference
    row each results table carries beside the untrained floor)."""
    from omnigen.metrics import MAX_PSNR

    results = main(["ground_truth=true", "image_size=32", "samples_per_family=6", f"out={tmp_path}"])
    assert set(results) == set(FAMILIES) | {"per_task"}
    for family in FAMILIES:
        for name, value in results[family].items():
            if name != "n":
                assert value == pytest.approx(MAX_PSNR if name.endswith("psnr") else 1.0), (family, name)
    assert "the ground truth" in (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["unseen"].startswith("not computed: the ground truth")
    by_size = {
        task: scores["n"] for task, scores in results["per_task"].items() if task.startswith("text_to_image/t2i/")
    }
    assert set(by_size) <= {f"text_to_image/t2i/{n} shapes" for n in (1, 2, 3)} and sum(by_size.values()) == 6
    with pytest.raises(SystemExit, match="needs image_size"):
        main(["ground_truth=true", f"out={tmp_path}/z"])


def test_evaluation_callback_logs_metrics_during_a_fit(tmp_path):
    train(
        compose_fit(
            [
                *FAST,
                "logger=csv",
                "callbacks.sample_grid=null",
                "+callbacks.evaluation._target_=omnigen.callbacks.evaluation.EvaluationCallback",
                "+callbacks.evaluation.every_n_steps=2",
                "+callbacks.evaluation.samples_per_family=2",
                "+callbacks.evaluation.num_inference_steps=1",
                "+callbacks.evaluation.families=[text_to_image,cv_tasks]",
            ],
            tmp_path,
        )
    )
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "eval/text_to_image/exact_scene" in header and "eval/cv_tasks/psnr" in header


def test_evaluate_asks_for_a_size_the_checkpoint_does_not_record(fitted_checkpoint, tmp_path):
    from omnigen.pipeline import OmniGenPipeline

    pipe = OmniGenPipeline.from_checkpoint(fitted_checkpoint)
    pipe.module.run_config = None  # as from a module built outside omnigen.fit
    pipe.save_pretrained(tmp_path / "export")
    with pytest.raises(SystemExit, match="records no training image size; pass image_size"):
        main([f"ckpt={tmp_path}/export", "families=[text_to_image]", f"out={tmp_path}/eval"])
    results = main(
        [
            f"ckpt={tmp_path}/export",
            "families=[text_to_image]",
            "image_size=16",
            "samples_per_family=1",
            "num_inference_steps=1",
            f"out={tmp_path}/eval",
        ]
    )
    assert results["text_to_image"]["n"] == 1
    unseen = json.loads((tmp_path / "eval" / "results.json").read_text())["unseen"]
    assert unseen == "not computed: the checkpoint's data are not recorded, not the Shapes-X2I DataModule"


def test_per_task_scores_keep_tasks_of_two_families_apart(fitted_checkpoint):
    from omnigen.evaluation import evaluate_shapes
    from omnigen.pipeline import OmniGenPipeline

    results, _ = evaluate_shapes(
        OmniGenPipeline.from_checkpoint(fitted_checkpoint),
        ["visual_condition", "cv_tasks"],
        samples_per_family=24,
        image_size=32,
        num_inference_steps=1,
        batch_size=24,
    )
    tasks = {
        t: s for t, s in results["per_task"].items() if t.count("/") == 1
    }  # family/task; /<n> shapes: by scene size
    names = {
        family: {t.split("/", 1)[1] for t in tasks if t.startswith(family + "/")}
        for family in ("visual_condition", "cv_tasks")
    }
    assert names["visual_condition"] & names["cv_tasks"]  # e.g. depth: a condition map in one, a target in the other
    for family in names:
        assert sum(s["n"] for t, s in tasks.items() if t.startswith(family + "/")) == 24
        by_size = [
            s["n"] for t, s in results["per_task"].items() if t.startswith(family + "/") and t.endswith(" shapes")
        ]
        assert 0 < sum(by_size) <= 24  # the tasks that draw a scene, again by its size


def test_scores_do_not_depend_on_the_batch_size(fitted_checkpoint):
    """Each sample's noise comes from (seed, its index): batches of 1 and of 3 draw the same images. Batches
    pad their prompts to the longest and attention masks the padding out, so only float rounding could
    differ between them; a pixel may move by one level, no more."""
    import numpy as np

    from omnigen.evaluation import evaluate_shapes
    from omnigen.pipeline import OmniGenPipeline

    pipe = OmniGenPipeline.from_checkpoint(fitted_checkpoint)
    runs = {
        size: evaluate_shapes(pipe, ["text_to_image", "mixed_modal"], 3, 32, 2, batch_size=size)[1] for size in (1, 3)
    }
    for one, three in zip(runs[1], runs[3], strict=True):
        assert one["instruction"] == three["instruction"]
        assert np.abs(one["generated"].astype(int) - three["generated"].astype(int)).max() <= 1
        assert one["scores"] == pytest.approx(three["scores"])


def test_the_cost_of_sampling_is_recorded_as_the_work_the_transformer_did(fitted_checkpoint):
    """transformer_rows_per_image counts prompts × branches over the computed steps: over 4 steps t = 0, 1/4, 1/2,
    3/4, guidance on [0, 0.5] runs 3 guided steps (2 branches for a caption, 3 for an edit) and 1 conditional one;
    a step cache that never recomputes runs the two steps its extrapolation needs."""
    from omnigen.evaluation import evaluate_shapes
    from omnigen.pipeline import OmniGenPipeline

    pipe = OmniGenPipeline.from_checkpoint(fitted_checkpoint)
    families = ["text_to_image", "mixed_modal"]
    options = {"plain": {}, "windowed": {"guidance_interval": [0, 0.5]}, "cached": {"step_cache": 1e9}}
    results = {name: evaluate_shapes(pipe, families, 2, 32, 4, **kw)[0] for name, kw in options.items()}
    rows = {name: [r[f]["transformer_rows_per_image"] for f in families] for name, r in results.items()}
    assert rows == {"plain": [8, 12], "windowed": [7, 10], "cached": [4, 6]}  # order 1: two computed steps
    assert all(r[f]["seconds_per_image"] > 0 for r in results.values() for f in families)
    assert "seconds_per_image" not in evaluate_shapes(None, families, 2, 32)[0]["text_to_image"]


def test_unseen_part_holds_the_samples_whose_instruction_the_training_stream_never_held(fitted_checkpoint, tmp_path):
    """The checkpoint's stream regenerated up to its step: told it trained 3000 steps of batch 4 (12,000
    samples, half of them captions), most one-shape captions of the evaluation were seen, few longer ones."""
    from omnigen.data.modules.shapes import trained_instructions
    from omnigen.pipeline import OmniGenPipeline

    pipe = OmniGenPipeline.from_checkpoint(fitted_checkpoint)
    pipe.module.loaded_step = 3000
    pipe.save_pretrained(tmp_path / "export")
    main(
        [f"ckpt={tmp_path}/export", "families=[text_to_image]", "samples_per_family=24", "num_inference_steps=1"]
        + [f"out={tmp_path}/eval"]
    )
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    seen, unseen = saved["seen"]["text_to_image"], saved["unseen"]["text_to_image"]
    assert seen["n"] > 0 and unseen["n"] > 0 and seen["n"] + unseen["n"] == 24
    trained = trained_instructions(pipe.module.run_config, 3000)
    assert saved["settings"]["training_instructions"]["distinct_instructions"] == len(trained)
    one_shape = [i for i in range(24) if " and " not in sample_caption(i)]
    assert sum(sample_caption(i) in trained for i in one_shape) > len(one_shape) / 2
    assert "| n | 24 | " in (tmp_path / "eval" / "results.md").read_text()
    # the ceiling split over the same stream; an earlier step's stream (stream_step) saw none of them
    truth = ["ground_truth=true", "image_size=32", "families=[text_to_image]", "samples_per_family=24"]
    main([*truth, f"ckpt={tmp_path}/export", f"out={tmp_path}/truth"])
    assert json.loads((tmp_path / "truth" / "results.json").read_text())["seen"]["text_to_image"]["n"] == seen["n"]
    main([*truth, f"ckpt={tmp_path}/export", "stream_step=0", f"out={tmp_path}/truth0"])
    assert json.loads((tmp_path / "truth0" / "results.json").read_text())["unseen"]["text_to_image"]["n"] == 24


def sample_caption(index: int) -> str:
    from omnigen.data.shapes import sample_at
    from omnigen.evaluation import EVAL_SEED_OFFSET

    return sample_at(index, EVAL_SEED_OFFSET, {"text_to_image": 1.0}, 32).instruction


def test_the_regenerated_stream_is_what_training_read(fitted_checkpoint):
    """trained_instructions against the instructions the fit's own DataModule gives its first steps; and
    where the stream cannot be regenerated, why."""
    from hydra.utils import instantiate

    from omnigen.data.modules.shapes import StreamUnknown, trained_instructions
    from omnigen.pipeline import OmniGenPipeline

    config = OmniGenPipeline.from_checkpoint(fitted_checkpoint).module.run_config
    loader = instantiate(config["data"], _convert_="all").train_dataloader()
    read = [i for _, batch in zip(range(3), loader, strict=False) for i in batch["instruction"]]
    assert len(read) == 3 * config["data"]["batch_size"] and trained_instructions(config, 3) == set(read)
    doubled = config | {"trainer": config["trainer"] | {"accumulate_grad_batches": 2}}
    assert trained_instructions(doubled, 1) == set(read[: 2 * config["data"]["batch_size"]])
    with pytest.raises(StreamUnknown, match="data are omnigen.data.modules.mixture.MixtureDataModule, not"):
        trained_instructions({"data": {"_target_": "omnigen.data.modules.mixture.MixtureDataModule"}}, 1)
    with pytest.raises(StreamUnknown, match="do not fix how many samples a step read"):
        trained_instructions(config | {"trainer": config["trainer"] | {"devices": "auto"}}, 1)
