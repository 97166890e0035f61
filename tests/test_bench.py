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
