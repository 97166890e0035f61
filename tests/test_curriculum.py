"""A curriculum inside one fit: stage boundaries switch resolution, batch size, lr and mix; resume lands in the
right stage."""

import pytest
import torch
from hydra_utils import FAST, compose_fit
from lightning import Callback

from omnigen.data.curriculum import Curriculum, Stage
from omnigen.fit import train
from omnigen.training.optim import warmup_cosine

STAGES = (
    "curriculum.stages=[{name: a, steps: 2, image_size: 16, batch_size: 4, lr: 1.0e-3},"
    "{name: b, steps: 2, image_size: 32, batch_size: 2, lr: 2.5e-4, mix: {t2i: 0.0, subject: 0.0,"
    " visual_condition: 0.0, edit: 1.0, other: 0.0}}]"
)
OVERRIDES = [
    "curriculum=shapes",
    STAGES,
    *FAST,
    "model.scheduler.warmup_steps=0",
    "logger=csv",
    "callbacks.checkpoint.every_n_train_steps=1",
]


class StepRecorder(Callback):
    def __init__(self):
        self.steps = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.steps[trainer.global_step] = (tuple(batch["output_image"].shape), lr, sorted(set(batch["family"])))


def fit(overrides, out):
    objects = train(compose_fit(overrides + ["+callbacks.recorder._target_=test_curriculum.StepRecorder"], out))
    recorder = next(c for c in objects["callbacks"] if isinstance(c, StepRecorder))
    return objects, recorder.steps


def test_stages_switch_resolution_batch_lr_and_mix_at_the_boundary(tmp_path):
    objects, steps = fit(OVERRIDES + ["trainer.max_steps=4"], tmp_path)
    assert objects["trainer"].global_step == 4
    assert [steps[i][0] for i in range(4)] == [(4, 3, 16, 16)] * 2 + [(2, 3, 32, 32)] * 2
    assert [steps[i][1] for i in range(4)] == pytest.approx([1e-3, 1e-3, 2.5e-4, 2.5e-4])
    assert steps[2][2] == steps[3][2] == ["mixed_modal"]  # stage b's mix: edits only
    assert (tmp_path / "samples" / "step_0000002.png").is_file()  # a grid at the boundary
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "curriculum/stage" in metrics.splitlines()[0] and "curriculum/image_size" in metrics.splitlines()[0]


def test_a_resume_mid_stage_continues_in_that_stage(tmp_path):
    train(compose_fit(OVERRIDES + ["trainer.max_steps=3"], tmp_path / "a"))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    objects, steps = fit(OVERRIDES + ["trainer.max_steps=4", f"ckpt_path={ckpt}"], tmp_path / "b")
    assert objects["trainer"].global_step == 4 and list(steps) == [3]
    assert steps[3][0] == (2, 3, 32, 32) and steps[3][1] == pytest.approx(2.5e-4)


def test_curriculum_lookup_and_lr_schedule():
    curriculum = Curriculum(
        [
            Stage(steps=3, image_size=16, batch_size=8, lr=1e-3),
            {"steps": 2, "image_size": 32, "batch_size": 4, "lr": 1e-4},
        ]
    )
    assert [curriculum.index_at(s) for s in range(7)] == [0, 0, 0, 1, 1, 1, 1] and curriculum.total_steps == 5
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup_steps=2, curriculum=curriculum)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 1e-4, 1e-4])
    with pytest.raises(ValueError, match="stage 0"):
        Curriculum([Stage(steps=0, image_size=16, batch_size=8, lr=1e-3)])


def test_the_paper_preset_is_table_1(tmp_path):
    from omnigen.fit import build

    objects = build(compose_fit(["curriculum=paper"], tmp_path))
    curriculum = objects["datamodule"].curriculum
    assert [(s.steps, s.image_size, s.lr) for s in curriculum.stages] == [
        (500_000, 256, 1e-4),
        (300_000, 512, 1e-4),
        (100_000, 1024, 4e-5),
        (30_000, 2240, 2e-5),
        (80_000, 1024, 2e-5),
    ]
    assert curriculum.stages[-1].resolution_mode == "buckets"
    assert objects["trainer"].max_steps == curriculum.total_steps
