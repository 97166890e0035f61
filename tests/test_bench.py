"""The benchmark scripts run and report what they claim (their timings are not asserted: machines are noisy)."""

import json

import pytest
import torch

from omnigen.bench import main as bench


def test_kv_cache_benchmark_runs_and_agrees(capsys):
    rows = bench(["kv_cache", "steps=1", "repeats=1", "size=16"])
    assert [r["input images"] for r in rows] == [0, 1, 2] and all(r["max |diff|"] <= 1e-5 for r in rows)
    assert "speed-up" in capsys.readouterr().out


def test_loader_benchmark_reports_both_throughputs(capsys):
    rows = bench(["loader", "batches=2", "repeats=1", "override=[data.batch_size=4,data=mixture]"])
    assert rows[0]["data"] == "MixtureDataModule" and rows[0]["batch"] == 4
    assert rows[0]["loader samples/s"] > 0 and rows[0]["training samples/s"] > 0
    assert "loader / training" in capsys.readouterr().out


def test_train_step_benchmark_runs_both_models_on_the_same_weights(capsys, tmp_path):
    rows = bench(["train_step", "batch=3", "repeats=1", "size=16", f"json={tmp_path / 'b.json'}"])
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["rows"] == rows and saved["settings"]["benchmark"] == "train_step" and saved["settings"]["batch"] == 3
    assert [r["input images"] for r in rows] == [0, 1, 2, "mixed"]
    assert rows[3]["sample tokens"] == f"{rows[0]['sample tokens'][:2]}-{rows[2]['sample tokens'][-2:]}"
    # equal samples are not merged (longer rows only add attention); the mixed batch packs with less padding
    assert [r["ours rows"] for r in rows[:3]] == [3, 3, 3] and rows[3]["ours rows"] < 3
    assert rows[3]["padding ours %"] < rows[3]["padding diffusers %"] and rows[0]["padding diffusers %"] == 0
    assert all(r["max |diff|"] <= 1e-5 and r["ours s"] > 0 and r["diffusers s"] > 0 for r in rows[:3])  # same velocity
    # diffusers' OmniGen rotary embedding takes row 0's positions for every row (`emb[0]`): with a
    # padded row 0 (text only, the shortest) the other rows are slightly off; ours equals each sample alone
    assert rows[3]["max |diff|"] <= 5e-3
    assert all(r["ours % matmul peak"] > 0 and r["diffusers % matmul peak"] > 0 for r in rows)
    assert "diffusers s" in capsys.readouterr().out


def test_training_step_flops_count_every_decoder_matmul_three_times():
    from omnigen.bench import random_module, training_step_flops

    module = random_module([])  # tiny preset: 4 layers, hidden 128, MLP 512, no bias
    per_layer = 4 * 128 * 128 + 3 * 512 * 128  # q, k, v, o; gate, up, down
    forward = 2 * 10 * 4 * per_layer + 4 * 2 * 2 * 10**2 * 128  # + QK^T and AV over 10 x 10
    assert training_step_flops(module, [10]) == 3 * forward
    assert training_step_flops(module, [10, 10, 10]) == 3 * training_step_flops(module, [10])


def test_sampling_benchmark_matches_diffusers_loop_and_measures_memory(capsys, tmp_path):
    rows = bench(["sampling", "steps=2", "repeats=1", "size=16", "memory=true", f"json={tmp_path / 's.json'}"])
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["rows"] == rows and saved["settings"]["benchmark"] == "sampling" and saved["settings"]["steps"] == 2
    assert [r["input images"] for r in rows] == [0, 1, 2] and rows[2]["prefix tokens"] > rows[0]["prefix tokens"]
    # Same weights, prompts, noise and schedule: a 0.1 change of either guidance scale moves pixels by ~2e-3.
    assert all(r["max |diff|"] <= 1e-4 and r["ours s"] > 0 and r["diffusers s"] > 0 for r in rows)
    assert all(r["ours peak MiB"] > 0 and r["diffusers peak MiB"] > 0 for r in rows)  # fresh interpreters, one per side
    assert "its OmniGenPipeline needs torchvision" in capsys.readouterr().out


def test_sampling_benchmark_times_the_faster_samplers_options_beside_ours_by_default():
    """With options, `ours` runs them and `ours default` (timed beside) is the plain sampler, which still matches
    diffusers' loop (the difference column is taken from it); other benchmarks refuse the options."""
    common = ["sampling", "steps=4", "repeats=1", "size=16"]
    rows = bench([*common, "step_cache=1e9", "step_cache_order=0", "guidance_interval=[0,0.5]", "schedule_shift=2"])
    for r in rows:
        assert r["max |diff|"] <= 1e-4 and r["ours default s"] > 0
        assert r["options' speed-up"] == pytest.approx(r["ours default s"] / r["ours s"])
    with pytest.raises(SystemExit, match="step_cache are sampling's settings"):
        bench(["kv_cache", "step_cache=0.1"])


def test_cpu_peak_memory_of_a_training_step_is_positive_and_grows_with_the_sequence():
    from dataclasses import asdict

    from omnigen.bench import parse_args
    from omnigen.bench.compare import measure_side

    args = parse_args(["train_step", "batch=2", "size=16"])
    peaks = measure_side(asdict(args) | {"threads": torch.get_num_threads()}, "diffusers")  # in this process
    assert len(peaks) == 4 and 0 < peaks[0] < peaks[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_device_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(SystemExit, match="CUDA is not available"):
        bench(["sampling", "device=cuda"])
    with pytest.raises(SystemExit, match="bad benchmark"):
        bench(["sample"])
    with pytest.raises(SystemExit, match="key=value"):
        bench(["sampling", "--steps", "2"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_and_train_step_run_on_cuda_with_allocator_peaks():
    for benchmark in ("sampling", "train_step"):
        rows = bench([benchmark, "device=cuda", "steps=2", "repeats=1", "size=16", "batch=2"])
        assert all(r["max |diff|"] <= 1e-3 and r["ours peak MiB"] > 0 and r["diffusers peak MiB"] > 0 for r in rows)


def test_packing_benchmark_reports_padding_before_and_after_on_the_configs_batches(capsys):
    rows = bench(
        [
            "packing",
            "batches=2",
            "override=[data=mixture,data.batch_size=8,data.mixed_sizes=true,data.resolution.mode=raw,"
            "data.families.edit.sources.0.image_size=16]",
        ]
    )
    assert [r["rows chosen for"] for r in rows] == ["dense", "padding"]
    for r in rows:
        assert r["batches"] == 2 and r["batch"] == 8 and r["rows packed"] < r["rows one per row"]
        assert r["padding packed %"] < r["padding one per row %"]
    # rows chosen for dense attention save its compute; rows chosen for padding alone pad least
    assert rows[0]["dense compute saved x"] > 1 and rows[0]["dense compute saved x"] >= rows[1]["dense compute saved x"]
    assert rows[1]["padding packed %"] <= rows[0]["padding packed %"]
    assert "packed to 1024 tokens per row" in capsys.readouterr().out
