"""rl_edit's screens as one table: each screen's held-out scores after its iterations against its start's.

    python experiments/rl_edit/screens.py            # from runs/ (screen.sh's), keeping copies in screens/
    python experiments/rl_edit/screens.py --kept     # from the kept copies alone (re-derives screens.{json,md})

Screens are single-seed or two-seed looks, not verdicts: the table gives each seed's difference (after − start)
and, for two seeds, their mean; no interval is drawn from them.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
KEPT = HERE / "screens"
CELLS = [  # (family, metric, label)
    ("mixed_modal", "edit_correct", "edit correct"),
    ("mixed_modal", "unchanged_psnr", "unchanged PSNR (dB)"),
    ("mixed_modal", "target_exact_scene", "edit exact scene"),
    ("text_to_image", "exact_scene", "t2i exact scene"),
]


def keep(runs: Path) -> None:
    """Copy each screen's and start's evaluation (results.json), its metrics.csv and fit time into screens/."""
    for run in sorted(runs.glob("rl_screen_*")):
        if not (run / "eval" / "results.json").is_file():
            continue
        dest = KEPT / run.name.removeprefix("rl_screen_")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(run / "eval" / "results.json", dest / "results.json")
        shutil.copy(next(run.glob("csv/version_*/metrics.csv")), dest / "metrics.csv")
        if (run / "fit_seconds").is_file():
            shutil.copy(run / "fit_seconds", dest / "fit_seconds")
    for start in sorted(runs.glob("rl_start_*")):
        if (start / "eval_screen" / "results.json").is_file():
            dest = KEPT / start.name.removeprefix("rl_")
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(start / "eval_screen" / "results.json", dest / "results.json")


def training_rewards(path: Path) -> dict[str, float]:
    """The rollouts' mean reward over the first and the last 10 iterations, the last 10's flat-group share,
    and the mean seconds per iteration (sampling, reward, update)."""
    rows = [r for r in csv.DictReader(path.open()) if r.get("rl/reward")]
    mean = lambda key, part: sum(float(r[key]) for r in part) / len(part)  # noqa: E731
    out = {
        "reward_first10": mean("rl/reward", rows[:10]),
        "reward_last10": mean("rl/reward", rows[-10:]),
        "flat_groups_last10": mean("rl/flat_groups", rows[-10:]),
        "iterations": len(rows),
    }
    timed = [r for r in csv.DictReader(path.open()) if r.get("rl/time_update")]
    for key in ("sampling", "reward"):
        out[f"seconds_{key}"] = mean(f"rl/time_{key}", rows)
    out["seconds_update"] = mean("rl/time_update", timed)
    return out


def main(kept_only: bool) -> None:
    if not kept_only:
        keep(Path("runs"))
    screens = []
    for run in sorted(p for p in KEPT.iterdir() if p.is_dir() and not p.name.startswith("start_")):
        name, start, seed = run.name.rsplit("_", 2)
        start_file = KEPT / f"start_{start}_{seed}" / "results.json"
        if not start_file.is_file():
            print(f"{run.name}: left out, its start has no evaluation yet ({start_file})")
            continue
        before = json.loads(start_file.read_text())["results"]
        after = json.loads((run / "results.json").read_text())["results"]
        row = {"screen": name, "start": start, "seed": int(seed.removeprefix("s")), "dir": run.name}
        for family, metric, _ in CELLS:
            row[f"{family}/{metric}"] = {"start": before[family][metric], "after": after[family][metric]}
        row |= training_rewards(run / "metrics.csv")
        if (run / "fit_seconds").is_file():
            row["fit_seconds"] = int((run / "fit_seconds").read_text())
        row["samples_per_family"] = int(after["mixed_modal"]["n"])
        screens.append(row)
    (HERE / "screens.json").write_text(json.dumps(screens, indent=1) + "\n")
    lines = [
        "# rl_edit screens",
        "",
        "Each row: one screen (`screen.sh`), its held-out scores after its iterations minus its start's (the same "
        "samples: the floor of the comparison), on the held-out samples counted in `n`. The ceiling is the ground "
        "truth: 1.0 and the PSNR cap, 100 dB. Screens are looks, not verdicts (one or two seeds, no intervals).",
        "",
        "| screen | start | seed | n | "
        + " | ".join(f"{label}: start → after" for *_, label in CELLS)
        + " | reward first 10 → last 10 | flat groups (last 10) | s / iteration |",
        "|---|---|---|---|" + "---|" * len(CELLS) + "---|---|---|",
    ]
    for row in screens:
        cells = []
        for family, metric, _ in CELLS:
            c = row[f"{family}/{metric}"]
            digits = 1 if metric.endswith("psnr") else 3
            cells.append(f"{c['start']:.{digits}f} → {c['after']:.{digits}f} ({c['after'] - c['start']:+.{digits}f})")
        seconds = row["seconds_sampling"] + row["seconds_reward"] + row["seconds_update"]
        lines.append(
            f"| [{row['screen']}](screens/{row['dir']}/results.json) | {row['start']} | {row['seed']} | "
            f"{row['samples_per_family']} | "
            + " | ".join(cells)
            + f" | {row['reward_first10']:.3f} → {row['reward_last10']:.3f} | {row['flat_groups_last10']:.2f} | "
            f"{seconds:.1f} |"
        )
    (HERE / "screens.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main("--kept" in sys.argv[1:])
