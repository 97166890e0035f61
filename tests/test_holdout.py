"""data.holdout=combos: attribute pairs kept out of every training sample, and the evaluation suites that
draw samples holding them (held_out_combos) or not (seen_combos)."""

import json

import pytest
from hydra_utils import FAST, compose_fit
from shapes_utils import MIX

from omnigen.data.modules.shapes import ShapesX2IDataModule
from omnigen.data.shapes import FAMILIES, HOLDOUTS, sample_at
from omnigen.evaluate import main
from omnigen.evaluation import evaluate_shapes
from omnigen.fit import train

HOLDOUT = HOLDOUTS["combos"]


def held_out_pairs(spec: dict) -> set[tuple[str, str]]:
    """The held-out pairs a sample's images show, read from its spec here rather than with holdout.py's reader:
    the shapes of every scene it records, and a subject in each of its colours, at its cell and (in the
    reference image) at the centre."""
    shapes = [
        (s["colour"], s["kind"], s["position"])
        for key in ("scene", "source", "target")
        if key in spec
        for s in spec[key]["shapes"]
    ]
    if "subject" in spec:
        subject = spec["subject"]
        shapes += [(c, subject["kind"], p) for c in subject["colours"] for p in (subject["position"], "center")]
    return {(c, k) for c, k, _ in shapes if (c, k) in HOLDOUT.colour_kind} | {
        (k, p) for _, k, p in shapes if (k, p) in HOLDOUT.kind_position
    }


def test_training_never_reads_a_sample_holding_a_held_out_pair():
    """600 samples of every family, as the DataModule's loader gives them to training."""
    datamodule = ShapesX2IDataModule(families=MIX, image_size=16, batch_size=60, holdout="combos")
    batches = [batch for _, batch in zip(range(10), datamodule.train_dataloader(), strict=False)]
    specs = [spec for batch in batches for spec in batch["spec"]]
    families = {family for batch in batches for family in batch["family"]}
    assert len(specs) == 600 and families == set(FAMILIES)
    assert not [spec for spec in specs if held_out_pairs(spec)]
    # not vacuous: the same indices without the holdout hold a pair in about half of the samples
    plain = [sample_at(i, 0, MIX, 16).spec for i in range(600)]
    assert sum(bool(held_out_pairs(spec)) for spec in plain) > 200


def test_the_holdout_keeps_the_family_mix_and_every_sample_it_accepts():
    redrawn = 0
    for index in range(300):
        plain, kept = sample_at(index, 5, MIX, 16), sample_at(index, 5, MIX, 16, HOLDOUT.excludes)
        assert kept.family == plain.family and not held_out_pairs(kept.spec)
        if held_out_pairs(plain.spec):
            redrawn += 1
        else:
            assert kept.instruction == plain.instruction and kept.spec == plain.spec
    assert redrawn > 50


def test_an_unknown_holdout_is_named():
    with pytest.raises(ValueError, match="unknown Shapes-X2I holdout 'combo'; known: \\['combos'\\]"):
        ShapesX2IDataModule(holdout="combo")


def test_the_suites_draw_samples_with_and_without_a_held_out_pair():
    for suite, holds in (("held_out_combos", True), ("seen_combos", False)):
        results, examples = evaluate_shapes(None, list(FAMILIES), 12, 32, suite=suite)
        assert len(examples) == 12 * len(FAMILIES)
        assert all(bool(held_out_pairs(e["spec"])) == holds for e in examples), suite
        assert results["text_to_image"]["exact_scene"] == 1.0  # the ground truth still scores the ceiling
    with pytest.raises(ValueError, match="unknown suite"):
        evaluate_shapes(None, ["text_to_image"], 1, 16, suite="combos")


@pytest.fixture(scope="module")
def holdout_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("holdout_fit")
    overrides = ["logger=csv", "callbacks.sample_grid=null", "trainer.max_steps=2", "data.holdout=combos"]
    train(compose_fit(FAST + overrides, out))
    return out / "checkpoints" / "last.ckpt"


def test_evaluate_scores_a_holdout_checkpoint_on_the_held_out_pairs(holdout_checkpoint, tmp_path):
    from omnigen.report.tables import read_run

    args = [f"ckpt={holdout_checkpoint}", "families=[text_to_image,mixed_modal]", "samples_per_family=3"]
    main([*args, "num_inference_steps=2", "suite=held_out_combos", f"out={tmp_path}"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["suite"] == "held_out_combos" and saved["settings"]["steps_trained"] == 2
    # a caption names every shape, so no held-out caption was ever trained on
    assert saved["unseen"]["text_to_image"]["n"] == 3 and saved["seen"]["text_to_image"]["n"] == 0
    assert saved["seen"]["mixed_modal"]["n"] + saved["unseen"]["mixed_modal"]["n"] == 3
    assert "suite held_out_combos" in (tmp_path / "results.md").read_text()
    read = read_run(tmp_path)["results"]  # the report reads the unseen part as a family of family/metric keys
    assert read["unseen"]["text_to_image/object"] == saved["unseen"]["text_to_image"]["object"]
