"""The inference entry points a user runs: `python -m omnigen.generate` and notebooks/inference.ipynb."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from omnigen.generate import main
from omnigen.utils.cli import UsageError, UserError

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "inference.ipynb"


def test_cli_generates_text_to_image_then_an_edit_of_it(fitted_checkpoint, tmp_path):
    common = [f"ckpt={fitted_checkpoint}", "num_inference_steps=2", "progress=false"]
    first = main(common + ["prompt=a large red circle at the center on a white background", f"out={tmp_path}/t2i.png"])
    assert first == [tmp_path / "t2i.png"] and Image.open(first[0]).size == (32, 32)  # the training size
    edit = main(
        common
        + [
            "prompt=<img><|image_1|></img> make the red circle green",
            f"input_images=[{first[0]}]",
            "use_input_image_size_as_output=true",
            f"out={tmp_path}/edit.png",
        ]
    )
    assert Image.open(edit[0]).size == (32, 32)
    batch = main(
        common
        + [
            "prompt=[a red circle,<img><|image_1|></img> remove the red circle]",
            f"input_images=[[],[{first[0]}]]",
            "height=16",
            "width=24",
            f"out={tmp_path}/b.png",
        ]
    )
    assert [Image.open(p).size for p in batch] == [(24, 16), (24, 16)]
    assert [p.name for p in batch] == ["b_0.png", "b_1.png"]


def test_cli_names_missing_and_unknown_keys(fitted_checkpoint):
    with pytest.raises(UsageError, match="missing prompt"):
        main([f"ckpt={fitted_checkpoint}"])
    with pytest.raises(UsageError, match=r"unknown key 'guidance' \(did you mean 'guidance_scale'\?\)"):
        main([f"ckpt={fitted_checkpoint}", "prompt=a red circle", "guidance=2"])


def test_an_input_image_larger_than_the_position_grid_is_scaled_to_fit_and_a_larger_output_is_refused(
    fitted_checkpoint, tmp_path
):
    big = tmp_path / "big.png"
    Image.new("RGB", (200, 120), "white").save(big)
    common = [f"ckpt={fitted_checkpoint}", "num_inference_steps=1", "progress=false", f"out={tmp_path}/x.png"]
    edit = main(
        common
        + ["prompt=<img><|image_1|></img> make it blue", f"input_images=[{big}]", "use_input_image_size_as_output=true"]
    )
    # tiny: a 16-token grid of 4 pixels, so 64 pixels a side; 120 · 64/200 = 38.4 -> 38, cropped to 36
    assert Image.open(edit[0]).size == (64, 36)
    with pytest.raises(UserError, match=r"height=128 width=128 .*at most 64 pixels a side .*set height and width"):
        main(common + ["prompt=a red circle", "height=128", "width=128"])


def test_cli_runs_as_a_module_with_a_progress_bar(fitted_checkpoint, tmp_path):
    out = tmp_path / "x.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "omnigen.generate",
            f"ckpt={fitted_checkpoint}",
            "prompt=a red circle",
            "num_inference_steps=3",
            f"out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and str(out) in result.stdout
    assert "3/3" in result.stderr  # tqdm's final count


def _images(notebook) -> int:
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    return sum("image/png" in o.get("data", {}) for o in outputs)


def test_inference_notebook_is_stored_executed_and_small():
    """notebooks/execute.sh stores it run on the quickstart's checkpoint: its images, a few kB each."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")
    assert _images(notebook) == 2  # the t2i image and the edit grid
    assert NOTEBOOK.stat().st_size < 100_000


def test_inference_notebook_runs_top_to_bottom(fitted_checkpoint):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:  # run from a clean copy, not on top of the stored outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    env = {"OMNIGEN_CKPT": str(fitted_checkpoint), "OMNIGEN_STEPS": "2"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        ).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert _images(notebook) == 2
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("2 training steps" in o.get("text", "") for o in outputs)


def test_cli_takes_the_sampler_options_and_names_bad_ones(fitted_checkpoint, tmp_path):
    """guidance_interval=[low,high] (omnigen.pipeline: guidance only at steps with t in it): [0,1] is the plain
    command's image, [0,0.5] another; schedule_shift=0.5 (the quickstart's recommendation) and step_cache=0 are
    the plain image, schedule_shift=3 and a step cache that skips every step after the first another; a reversed
    interval, a shift of 0 and a negative step cache are one line naming the setting."""
    common = [f"ckpt={fitted_checkpoint}", "num_inference_steps=4", "progress=false", "prompt=a red circle"]
    plain = Image.open(main([*common, f"out={tmp_path}/plain.png"])[0])
    whole = Image.open(main([*common, "guidance_interval=[0,1]", f"out={tmp_path}/whole.png"])[0])
    early = Image.open(main([*common, "guidance_interval=[0,0.5]", f"out={tmp_path}/early.png"])[0])
    assert plain.tobytes() == whole.tobytes() and plain.tobytes() != early.tobytes()
    with pytest.raises(UserError, match="guidance_interval"):
        main([*common, "guidance_interval=[0.5,0.2]", f"out={tmp_path}/bad.png"])
    shifted = Image.open(main([*common, "schedule_shift=3", f"out={tmp_path}/shifted.png"])[0])
    recommended = Image.open(main([*common, "schedule_shift=0.5", f"out={tmp_path}/half.png"])[0])  # the quickstart's
    assert plain.tobytes() == recommended.tobytes()
    assert shifted.tobytes() != plain.tobytes()
    with pytest.raises(UserError, match="schedule_shift"):
        main([*common, "schedule_shift=0", f"out={tmp_path}/bad.png"])
    assert Image.open(main([*common, "step_cache=0", f"out={tmp_path}/c.png"])[0]).tobytes() == plain.tobytes()
    skipped = Image.open(main([*common, "step_cache=100", "step_cache_order=0", f"out={tmp_path}/s.png"])[0])
    assert skipped.tobytes() != plain.tobytes()
    with pytest.raises(UserError, match="step_cache"):
        main([*common, "step_cache=-1", f"out={tmp_path}/bad.png"])


def test_cli_samples_as_the_checkpoint_recommends_unless_told_otherwise(fitted_checkpoint, tmp_path):
    """An exported checkpoint recording `sampling` (4 steps shifted towards data, guidance on [0, 0.5]): the command
    without sampling keys draws what it draws with those keys given; a key given overrides its one setting."""
    from omnigen.pipeline import OmniGenPipeline

    pipe = OmniGenPipeline.from_checkpoint(fitted_checkpoint)
    recommended = ["num_inference_steps=4", "schedule_shift=0.5", "guidance_interval=[0,0.5]"]
    pipe.module.run_config["sampling"] = {
        "num_inference_steps": 4,
        "schedule_shift": 0.5,
        "guidance_interval": [0, 0.5],
    }
    common = [f"ckpt={pipe.save_pretrained(tmp_path / 'fast')}", "progress=false", "prompt=a red circle"]

    def image(*keys: str) -> bytes:
        return Image.open(main([*common, *keys, f"out={tmp_path}/{len(keys)}.png"])[0]).tobytes()

    assert image() == image(*recommended)
    assert image("schedule_shift=1") == image(*recommended[::2], "schedule_shift=1") != image()
