"""Where mini_paper's seven targets land, per arm, seed and minute, from the copies run.sh keeps (runs/), with the
floor (the untrained model) and the ceiling (the ground truth); how many RL iterations and SFT steps the 12
minutes bought, with the seconds per RL iteration by part; and each RL run's loss and rollout reward over its
iterations, in blocks of 25.

    python experiments/rl_mini_paper/targets.py     # writes targets.json and targets.md beside this file
    python experiments/rl_mini_paper/targets.py --examples runs   # and examples_minute_12.png, from the full runs
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent
KEPT = HERE / "runs"
CEILING = HERE.parent / "mini_paper" / "runs" / "mini_paper_ground_truth" / "results.json"
START_STEP = 2400  # the starts' last step (run.sh): the SFT arm resumes there
MINUTES = ("0", "3", "6", "12")
PARTS = ("sampling", "reward", "update")
BLOCK = 25  # RL iterations per point of the loss and reward curves
# mini_paper's targets (experiments/mini_paper/README.md): name -> every (family, metric, bar) that must hold
TARGETS = {
    "t2i object / colour / position ≥ 0.8": [("text_to_image", m, 0.8) for m in ("object", "colour", "position")],
    "edit correct ≥ 0.8 at PSNR ≥ 25 dB": [("mixed_modal", "edit_correct", 0.8), ("mixed_modal", "unchanged_psnr", 25)],
    "subject fidelity ≥ 0.8": [("subject_driven", "subject_fidelity", 0.8)],
    "visual-condition edge F1 ≥ 0.7": [("visual_condition", "edge_f1", 0.7)],
    "CV edge F1 ≥ 0.8": [("cv_tasks", "edge_f1", 0.8)],
    "CV segmentation mIoU ≥ 0.8": [("cv_tasks", "seg_miou", 0.8)],
    "CV referring mask IoU ≥ 0.8": [("cv_tasks", "mask_iou", 0.8)],
}


def target_values(results_file: Path) -> dict[str, dict]:
    """Each target's values (in its metrics' order) and whether all of them reach their bars."""
    results = json.loads(results_file.read_text())["results"]
    out = {}
    for name, checks in TARGETS.items():
        values = [results[family][metric] for family, metric, _ in checks]
        out[name] = {"values": values, "met": all(v >= bar for v, (_, _, bar) in zip(values, checks, strict=True))}
    return out


def cell(target: dict) -> str:
    shown = " / ".join(f"{v:.1f}" if v > 1 else f"{v:.2f}" for v in target["values"])
    return shown + (" ✓" if target["met"] else "")


def logged(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


def block_means(values: list[float]) -> list[float]:
    return [statistics.mean(values[i : i + BLOCK]) for i in range(0, len(values), BLOCK)]


def rl_log(metrics: Path) -> dict:
    """The RL loss log's iterations, its mean seconds per iteration in each part, and its loss and rollout reward
    in blocks of BLOCK iterations."""
    rows = list(csv.DictReader(metrics.open()))
    out: dict = {"iterations": sum(1 for r in rows if r.get("rl/reward"))}
    for part in PARTS:
        out[f"seconds_{part}"] = statistics.mean(logged(rows, f"rl/time_{part}"))
    curves = {
        f"{c}_blocks": block_means(logged(rows, key)) for c, key in (("loss", "train/loss"), ("reward", "rl/reward"))
    }
    return out | curves


def sft_steps(metrics: Path) -> int:
    """The optimizer steps the resumed supervised arm took: its last logged step past the start's."""
    return max(int(r["step"]) for r in csv.DictReader(metrics.open()) if r.get("step")) + 1 - START_STEP


def main() -> None:
    floor = target_values(next(KEPT.glob("rl_mp_start_s*")) / "eval_floor" / "results.json")
    ceiling = target_values(CEILING)
    runs = []
    for run in sorted(KEPT.glob("rl_mp_*_s*")):
        _, _, arm, seed = run.name.split("_")
        if arm == "start":
            continue
        row = {"arm": arm, "seed": int(seed.removeprefix("s"))}
        row["targets"] = {m: target_values(run / f"eval_minute_{m}" / "results.json") for m in MINUTES}
        metrics = run / "csv" / "version_0" / "metrics.csv"
        row |= rl_log(metrics) if arm == "rl" else {"steps": sft_steps(metrics)}
        runs.append(row)
    per_part = {p: statistics.mean(r[f"seconds_{p}"] for r in runs if r["arm"] == "rl") for p in PARTS}
    (HERE / "targets.json").write_text(
        json.dumps({"floor": floor, "ceiling": ceiling, "runs": runs, "mean_seconds_per_iteration": per_part}, indent=1)
        + "\n"
    )
    last = MINUTES[-1]
    lines = [
        "# rl_mini_paper: mini_paper's seven targets, per arm and seed",
        "",
        f"Each cell: the target's metrics (64 held-out samples per family), and ✓ where all reach their bars. Minute "
        f"0 is the start (mini_paper's step {START_STEP}), shared by both arms. Source: `targets.json`, from each "
        "run's `runs/<run>/eval_minute_<m>/results.json`, the floor's `runs/rl_mp_start_s<seed>/eval_floor/` and the "
        "ceiling's `../mini_paper/runs/mini_paper_ground_truth/results.json`.",
        "",
        "| target | floor | " + " | ".join(f"{r['arm']} s{r['seed']}: 0 → {last} min" for r in runs) + " | ceiling |",
        "|---|---|" + "---|" * len(runs) + "---|",
    ]
    for name in TARGETS:
        cells = [f"{cell(r['targets']['0'][name])} → {cell(r['targets'][last][name])}" for r in runs]
        lines.append(f"| {name} | {cell(floor[name])} | " + " | ".join(cells) + f" | {cell(ceiling[name])} |")
    lines += ["", "Targets met, of 7:", "", "| arm | seed | " + " | ".join(f"minute {m}" for m in MINUTES) + " |"]
    lines.append("|---|---|" + "---|" * len(MINUTES))
    for r in runs:
        met = [sum(t["met"] for t in r["targets"][m].values()) for m in MINUTES]
        lines.append(f"| {r['arm']} | {r['seed']} | " + " | ".join(map(str, met)) + " |")
    total = sum(per_part.values())
    lines += [
        "",
        "Mean seconds per RL iteration (8 prompts × G 8 = 64 samples, 10 Euler steps, one thread, the SFT arm beside "
        "it on the 2-core CPU machine). Source: `targets.json`, from the RL runs' "
        "`runs/<run>/csv/version_0/metrics.csv`:",
        "",
        "| part | seconds | share |",
        "|---|---|---|",
        *(f"| {p} | {per_part[p]:.2f} | {per_part[p] / total:.0%} |" for p in PARTS),
        f"| all | {total:.2f} | 100% |",
        "",
        "In the 12 minutes: "
        + ", ".join(
            f"{r['arm']} s{r['seed']} {r['iterations']} iterations"
            if r["arm"] == "rl"
            else f"sft s{r['seed']} {r['steps']} steps"
            for r in runs
        )
        + ".",
        "",
        f"Each RL run's loss and rollout reward, the mean of each block of {BLOCK} iterations in order. Source: "
        "`targets.json`, from the same logs:",
        "",
        "| run | curve | values |",
        "|---|---|---|",
    ]
    for r in (r for r in runs if r["arm"] == "rl"):
        for curve in ("loss", "reward"):
            lines.append(f"| rl s{r['seed']} | {curve} | " + " ".join(f"{v:.2f}" for v in r[f"{curve}_blocks"]) + " |")
    (HERE / "targets.md").write_text("\n".join(lines) + "\n")


def examples_grid(runs: Path, seeds: tuple[int, ...] = (0, 2)) -> None:
    """The evaluation's example grids at the last minute, sft beside rl, for each seed in `seeds` (seed 2's RL
    run diverged): examples_minute_<last>.png beside this file."""
    named = [(f"{arm} s{seed}", runs / f"rl_mp_{arm}_s{seed}") for seed in seeds for arm in ("sft", "rl")]
    grids = [Image.open(run / f"eval_minute_{MINUTES[-1]}" / "examples.png").convert("RGB") for _, run in named]
    gap, title = 10, 16
    size = (sum(g.width for g in grids) + gap * (len(grids) - 1), max(g.height for g in grids) + title)
    out = Image.new("RGB", size, "white")
    x = 0
    for (name, _), grid in zip(named, grids, strict=True):
        ImageDraw.Draw(out).text((x + 4, 2), f"{name}, minute {MINUTES[-1]}", fill="black")
        out.paste(grid, (x, title))
        x += grid.width + gap
    out.save(HERE / f"examples_minute_{MINUTES[-1]}.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, help="the full runs' folder (run.sh's runs/), for the example grid")
    args = parser.parse_args()
    main()
    if args.examples:
        examples_grid(args.examples)
