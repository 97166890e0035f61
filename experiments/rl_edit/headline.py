"""The headline's two side tables, from the copies run.sh keeps (experiments/rl_edit/runs/):

* T2 per seed: for each arm, start and minute, whether edit correctness >= 0.8, t2i exact scene >= 0.6 and
  unchanged PSNR >= 25 dB all hold (the targets of experiments/speedrun), with the three values;
* where the 10 minutes went: per RL iteration, the seconds spent sampling the rollout, scoring it and
  updating (the loss, backward and step), and the iterations the RL arm and the steps the SFT arm took.

    python experiments/rl_edit/headline.py     # writes headline.json and headline.md beside this file
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from screens import training_rewards  # the RL loss log's per-part seconds

HERE = Path(__file__).parent
START_STEP = 2200  # the starts' last step (starts.sh): the SFT arm resumes there
MINUTES = ("0", "2.5", "5", "10")
PARTS = ("sampling", "reward", "update")
T2 = {"edit_correct": 0.8, "exact_scene": 0.6, "unchanged_psnr": 25.0}


def t2_cells(results: dict) -> dict[str, float | bool]:
    values = {
        "edit_correct": results["mixed_modal"]["edit_correct"],
        "exact_scene": results["text_to_image"]["exact_scene"],
        "unchanged_psnr": results["mixed_modal"]["unchanged_psnr"],
    }
    return values | {"t2": all(values[k] >= bar for k, bar in T2.items())}


def sft_steps(metrics: Path) -> int:
    """The optimizer steps the resumed supervised arm took: its last logged step past the start's."""
    steps = [int(r["step"]) for r in csv.DictReader(metrics.open()) if r.get("step")]
    return max(steps) + 1 - START_STEP


def main() -> None:
    runs = []
    for run in sorted((HERE / "runs").glob("rl_edit_*_s*")):
        _, _, arm, start, seed = run.name.split("_")
        metrics = run / "csv" / "version_0" / "metrics.csv"
        row = {"arm": arm, "start": start, "seed": int(seed.removeprefix("s"))}
        row["t2"] = {
            m: t2_cells(json.loads((run / f"eval_minute_{m}" / "results.json").read_text())["results"]) for m in MINUTES
        }
        if arm == "rl":
            timed = training_rewards(metrics)
            row |= {"iterations": timed["iterations"]} | {f"seconds_{p}": timed[f"seconds_{p}"] for p in PARTS}
        else:
            row["steps"] = sft_steps(metrics)
        runs.append(row)
    rl = [r for r in runs if r["arm"] == "rl"]
    per_part = {p: statistics.mean(r[f"seconds_{p}"] for r in rl) for p in PARTS}
    total = sum(per_part.values())
    (HERE / "headline.json").write_text(
        json.dumps({"runs": runs, "mean_seconds_per_iteration": per_part}, indent=1) + "\n"
    )
    lines = [
        "# rl_edit headline: T2 per seed, and where the time went",
        "",
        "T2: edit correctness ≥ 0.8, t2i exact scene ≥ 0.6 and unchanged PSNR ≥ 25 dB, all three. Each cell: "
        "edit correct / t2i exact scene / PSNR (dB), and ✓ where T2 holds (128 held-out samples per family). "
        "Source: `headline.json`, from each run's `runs/<run>/eval_minute_<m>/results.json`.",
        "",
        "| arm | start | seed | " + " | ".join(f"minute {m}" for m in MINUTES) + " |",
        "|---|---|---|" + "---|" * len(MINUTES),
    ]
    for r in sorted(runs, key=lambda r: (r["start"], r["arm"], r["seed"])):
        cells = [
            f"{c['edit_correct']:.2f} / {c['exact_scene']:.2f} / {c['unchanged_psnr']:.1f}{' ✓' if c['t2'] else ''}"
            for c in (r["t2"][m] for m in MINUTES)
        ]
        lines.append(f"| {r['arm']} | {r['start']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean seconds per RL iteration (8 prompts × G 8 = 64 samples, 10 Euler steps), over the "
        f"{len(rl)} RL runs (one thread each, the SFT arm beside it on the 2-core CPU machine). Source: "
        "`headline.json`, from the runs' `runs/<run>/csv/version_0/metrics.csv`:",
        "",
        "| part | seconds | share |",
        "|---|---|---|",
        *(f"| {p} | {per_part[p]:.2f} | {per_part[p] / total:.0%} |" for p in PARTS),
        f"| all | {total:.2f} | 100% |",
        "",
        "In the 10 minutes, RL iterations per run: "
        + ", ".join(f"{r['start']} s{r['seed']} {r['iterations']}" for r in rl)
        + ". SFT steps per run: "
        + ", ".join(f"{r['start']} s{r['seed']} {r['steps']}" for r in runs if r["arm"] == "sft")
        + ".",
    ]
    (HERE / "headline.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
