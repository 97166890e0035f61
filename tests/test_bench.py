"""The benchmark scripts run and report what they claim (their timings are not asserted: machines are noisy)."""

import json

from omnigen.bench import main as bench


def test_kv_cache_benchmark_runs_and_agrees(capsys):
    rows = bench(["kv_cache", "--steps", "1", "--repeats", "1", "--size", "16"])
    assert [r["input images"] for r in rows] == [0, 1, 2] and all(r["max |diff|"] <= 1e-5 for r in rows)
    assert "speed-up" in capsys.readouterr().out


def test_loader_benchmark_reports_both_throughputs(capsys):
    rows = bench(["loader", "--batches", "2", "--repeats", "1", "--override", "data.batch_size=4",
                  "--override", "data=mixture"])
    assert rows[0]["data"] == "MixtureDataModule" and rows[0]["batch"] == 4
    assert rows[0]["loader samples/s"] > 0 and rows[0]["training samples/s"] > 0
    assert "loader / training" in capsys.readouterr().out


def test_train_step_benchmark_runs_both_models_on_the_same_weights(capsys, tmp_path):
    rows = bench(["train_step", "--batch", "2", "--repeats", "1", "--size", "16", "--json", str(tmp_path / "b.json")])
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["rows"] == rows and saved["settings"]["benchmark"] == "train_step" and saved["settings"]["batch"] == 2
    assert [r["input images"] for r in rows] == [0, 1, 2] and rows[2]["tokens per row"] > rows[0]["tokens per row"]
    assert all(r["max |diff|"] <= 1e-5 and r["ours s"] > 0 and r["diffusers s"] > 0 for r in rows)  # same velocity
    assert all(r["ours % matmul peak"] > 0 and r["diffusers % matmul peak"] > 0 for r in rows)
    assert "diffusers s" in capsys.readouterr().out


def test_training_step_flops_count_every_decoder_matmul_three_times():
    from omnigen.bench import random_module, training_step_flops

    module = random_module([])  # tiny preset: 4 layers, hidden 128, MLP 512, no bias
    per_layer = 4 * 128 * 128 + 3 * 512 * 128  # q, k, v, o; gate, up, down
    forward = 2 * 10 * 4 * per_layer + 4 * 2 * 2 * 10**2 * 128  # + QK^T and AV over 10 x 10
    assert training_step_flops(module, batch=1, tokens=10) == 3 * forward
