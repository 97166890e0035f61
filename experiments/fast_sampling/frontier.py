"""fast_sampling's tables and frontier, from the kept evaluations (runs/) and the timing JSONs.

    python experiments/fast_sampling/frontier.py OUT PRIMARY EXPECT CONTROL [SETTING...]

Always: screen.md / screen.json, the screen's scores and transformer rows per image of every setting (one
checkpoint seed per kind, evaluation seed 1). With SETTINGs (the confirmed ones): per kind, `omnigen.report`
against CONTROL (OUT/<kind>/results.md, .json, plot.png). PRIMARY (`family/metric`) and EXPECT (`better` or
`worse`, every confirmed setting's hypothesis) apply to the speedrun kind: the experiment's primary cell. Then
frontier.md / frontier.json / frontier.png: each setting's speed-up over the control (timing_<kind>.json) beside
its paired differences, and whether it meets the issue's goal: at least 2x fewer seconds per image at batch 1
and at batch 16, with every headline metric of the family's interval including 0 or lying above it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from settings import SETTINGS  # noqa: E402

from omnigen.report import report  # noqa: E402

KINDS = {"quickstart": ("fast_qs", [0, 1, 2]), "speedrun": ("fast_sr", [7, 8, 9])}
FAMILY_METRICS = {
    "text_to_image": ["object", "colour", "position", "count", "exact_scene"],
    "mixed_modal": ["edit_correct", "unchanged_psnr"],
}
METRICS = [f"{f}/{m}" for f, ms in FAMILY_METRICS.items() for m in ms]
# every edit instruction of the evaluation was in both kinds' training streams (their scenes were not): unseen
# samples are captions alone (90-93 of 128)
UNSEEN = ["unseen/text_to_image/exact_scene"]
PLOTTED = ["text_to_image/exact_scene", "mixed_modal/edit_correct", "mixed_modal/unchanged_psnr"]
GOAL_SPEED_UP = 2.0


def fmt(value: float, metric: str) -> str:
    return f"{value:.1f}" if metric.endswith("psnr") else f"{value:.3f}"


def screen(out: Path) -> dict:
    """Every setting's scores on the screen (one seed per kind), with rows per image relative to the control."""
    table, lines = {}, []
    for kind, (prefix, seeds) in KINDS.items():
        run = out / "runs" / f"{prefix}_s{seeds[0]}"
        rows = {}
        for name in SETTINGS:
            path = run / f"screen_{name}" / "results.json"
            if path.is_file():
                results = json.loads(path.read_text())["results"]
                rows[name] = {f"{f}/{m}": results[f][m] for f, ms in FAMILY_METRICS.items() for m in ms} | {
                    f"{f}/rows": results[f]["transformer_rows_per_image"] for f in FAMILY_METRICS
                }
        if not rows:
            continue
        table[kind] = rows
        control = rows.get("c20")
        lines += [
            f"\n## {kind} (seed {seeds[0]})\n",
            "| setting | " + " | ".join(METRICS) + " | rows / image t2i, edit (× fewer than c20) |",
            "|---" * (len(METRICS) + 2) + "|",
        ]
        for name, row in rows.items():
            work = ", ".join(
                f"{row[f'{f}/rows']:.0f}" + (f" (×{control[f'{f}/rows'] / row[f'{f}/rows']:.2f})" if control else "")
                for f in FAMILY_METRICS
            )
            lines.append(f"| {name} | " + " | ".join(fmt(row[m], m) for m in METRICS) + f" | {work} |")
    header = (
        "# fast_sampling: the screen\n\nA screen: one checkpoint seed per kind, scored on evaluation seed 1 (64 "
        "samples per family, other samples than the confirmation's seed 0), every setting of settings.py. It chose "
        "the settings confirmed on 3 seeds; no verdict is drawn from it. Rows / image: the transformer rows "
        "(prompts × guidance branches) run per image, summed over the computed steps: the work, exact on any "
        "machine.\n"
    )
    (out / "screen.md").write_text(header + "\n".join(lines) + "\n")
    (out / "screen.json").write_text(json.dumps(table, indent=2))
    return table


def confirm(out: Path, primary: str, expect: str, control: str, names: list[str]) -> None:
    frontier, lines = {}, []
    for kind, (prefix, seeds) in KINDS.items():
        runs = [out / "runs" / f"{prefix}_s{s}" for s in seeds]
        arms = {name: [run / f"eval_{name}" for run in runs] for name in (control, *names)}
        main = kind == "speedrun" and primary
        report(
            arms,
            out / kind,
            METRICS + UNSEEN,
            f"fast_sampling, {kind}",
            control,
            out / "runs" / f"fast_floor_{kind}",
            out / "runs" / "fast_ground_truth",
            expect=dict.fromkeys(names, expect) if main and expect else None,
            primary=primary if main else None,
        )
        judged = json.loads((out / kind / "results.json").read_text())["vs_control"]
        timing = json.loads((out / f"timing_{kind}.json").read_text())
        speed = {(r["setting"], r["family"], r["batch"]): r for r in timing["rows"]}
        frontier[kind] = {"timing": {k: v for k, v in timing.items() if k != "rows"}, "settings": {}}
        lines += [
            f"\n## {kind}: seeds {', '.join(map(str, seeds))} ({timing['machine']}, {timing['threads']} threads)\n",
            "| setting | family | s / image batch 1 (speed-up) | s / image batch 16 (speed-up) | rows / image | "
            "paired differences from the control [95 % t interval] | goal met |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in (control, *names):
            entry = frontier[kind]["settings"][name] = {}
            for family, metrics in FAMILY_METRICS.items():
                b1, b16 = speed[(name, family, 1)], speed[(name, family, 16)]
                cells = {m: judged[name][f"{family}/{m}"] for m in metrics} if name != control else {}
                met = name != control and met_goal(b1["speed_up"], b16["speed_up"], cells.values())
                entry[family] = {"batch_1": b1, "batch_16": b16, "differences": cells, "goal_met": met}
                differences = "; ".join(f"{m} {interval(d, m)}" for m, d in cells.items()) or "(the control)"
                lines.append(
                    f"| {name} | {family} | {b1['seconds_per_image']:.4f} (×{b1['speed_up']:.2f}) | "
                    f"{b16['seconds_per_image']:.4f} (×{b16['speed_up']:.2f}) | "
                    f"{b1['transformer_rows_per_image']:.0f} | {differences} | "
                    f"{'yes' if met else 'no' if name != control else '–'} |"
                )
    (out / "frontier.json").write_text(json.dumps(frontier, indent=2))
    (out / "frontier.md").write_text(
        "# fast_sampling: speed against quality\n\nSpeed-up: the control's seconds per image over the setting's, "
        "measured side by side in one process (timing.py, on the first seed's checkpoint). Differences: setting − "
        "control per checkpoint seed on the held-out evaluation (128 samples per family), mean and 95 % paired t "
        "interval over 3 seeds (omnigen.report; the verdicts, Holm-corrected, in <kind>/results.md). Goal met: "
        f"≥ {GOAL_SPEED_UP:g}× at batch 1 and at batch 16, and every metric's interval includes 0 or lies above it "
        "(a difference equal on every seed has no interval: it passes only when it is not negative).\n"
        + "\n".join(lines)
        + "\n"
    )
    plot_frontier(frontier, control, out / "frontier.png")


def interval(d: dict, metric: str) -> str:
    if d["low"] is None:
        return f"{d['mean']:+.3f} (equal on every seed)" if not metric.endswith("psnr") else f"{d['mean']:+.2f} dB"
    unit = " dB" if metric.endswith("psnr") else ""
    digits = 2 if metric.endswith("psnr") else 3
    return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]{unit}"


def met_goal(speed_1: float, speed_16: float, differences) -> bool:
    not_worse = all((d["high"] >= 0) if d["high"] is not None else d["mean"] >= 0 for d in differences)
    return speed_1 >= GOAL_SPEED_UP and speed_16 >= GOAL_SPEED_UP and not_worse


def plot_frontier(frontier: dict, control: str, path: Path) -> None:
    """Per kind and plotted metric: each setting's paired difference from the control (mean, 95 % interval)
    against its speed-up, at batch 16 (filled) and batch 1 (open); the goal's region is shaded."""
    fig, axes = plt.subplots(len(frontier), len(PLOTTED), figsize=(5 * len(PLOTTED), 4 * len(frontier)), squeeze=False)
    for row, (kind, data) in enumerate(frontier.items()):
        for col, key in enumerate(PLOTTED):
            family, metric = key.split("/")
            ax = axes[row][col]
            ax.axhline(0, color="grey", lw=0.8)
            ax.axvspan(GOAL_SPEED_UP, 10, color="green", alpha=0.06)
            for name, entry in data["settings"].items():
                cell = entry[family]
                d = cell["differences"].get(metric, {"mean": 0.0, "low": None, "high": None})
                err = [[d["mean"] - d["low"]], [d["high"] - d["mean"]]] if d["low"] is not None else None
                for batch, face in (("batch_16", None), ("batch_1", "none")):
                    x = cell[batch]["speed_up"]
                    ax.errorbar(x, d["mean"], yerr=err, fmt="o", mfc=face, capsize=3, color=color_of(name, data))
                ax.annotate(name, (cell["batch_16"]["speed_up"], d["mean"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlim(0.8, max(4.0, *(e[family]["batch_1"]["speed_up"] * 1.2 for e in data["settings"].values())))
            ax.set_xticks([1, 1.5, 2, 3, 4], ["1×", "1.5×", "2×", "3×", "4×"])
            ax.minorticks_off()
            ax.set_title(f"{kind}: {key}", fontsize=9)
            ax.set_xlabel(f"speed-up over {control} (filled: batch 16, open: batch 1)")
            ax.set_ylabel("setting − control (3 seeds, 95 % CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def color_of(name: str, data: dict) -> str:
    return f"C{list(data['settings']).index(name) % 10}"


if __name__ == "__main__":
    out_dir, primary_cell, expected, control_name, *confirmed = sys.argv[1:]
    screen(Path(out_dir))
    if confirmed:
        confirm(Path(out_dir), primary_cell, expected, control_name, confirmed)
