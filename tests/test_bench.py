"""The benchmark scripts run and report what they claim (their timings are not asserted: machines are noisy)."""

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


def test_train_step_benchmark_runs_both_models_on_the_same_weights(capsys):
    rows = bench(["train_step", "--batch", "2", "--repeats", "1", "--size", "16"])
    assert [r["input images"] for r in rows] == [0, 1, 2] and rows[2]["tokens per row"] > rows[0]["tokens per row"]
    assert all(r["max |diff|"] <= 1e-5 and r["ours s"] > 0 and r["diffusers s"] > 0 for r in rows)  # same velocity
    assert "diffusers s" in capsys.readouterr().out
