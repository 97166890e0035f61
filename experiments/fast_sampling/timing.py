"""Seconds per image of sampler settings, measured side by side in one process.

    python experiments/fast_sampling/timing.py CKPT OUT.json CONTROL SETTING...   (names from settings.py)

For each setting, the held-out evaluation's first 16 samples of each family (evaluate's samples and noise: seed 0)
are generated one at a time (batch 1) and as one batch of 16. `omnigen.bench.common.alternate` runs every call once
per repeat, reversing the order each repeat so machine noise hits all alike; the first repeat warms up and is not
counted. OUT holds, per setting, family and batch size, the median seconds per image, its speed-up over CONTROL
(control seconds / setting seconds) and the transformer rows run per image, with torch's thread count (run.sh: 2)
and the machine.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from settings import SETTINGS  # noqa: E402

from omnigen.bench.common import alternate  # noqa: E402
from omnigen.data.shapes import ShapesSample, sample_at  # noqa: E402
from omnigen.evaluation import EVAL_SEED_OFFSET, noise_generator  # noqa: E402
from omnigen.pipeline import OmniGenPipeline  # noqa: E402
from omnigen.utils.images import from_array  # noqa: E402

SAMPLES, BATCHES, REPEATS, SIZE = 16, (1, 16), 5, 32
FAMILIES = ("text_to_image", "mixed_modal")


def sampler(pipe: OmniGenPipeline, samples: list[ShapesSample], options: dict, batch: int) -> Callable[[], None]:
    """One call: every sample generated, `batch` at a time, with evaluate's per-sample noise."""

    def call() -> None:
        for start in range(0, len(samples), batch):
            chunk = samples[start : start + batch]
            pipe.generate(
                [s.instruction for s in chunk],
                [[from_array(im) for im in s.input_images] for s in chunk],
                SIZE,
                SIZE,
                generator=[noise_generator(0, i) for i in range(start, start + len(chunk))],
                **options,
            )

    return call


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{cpu}, {platform.system()}, torch {torch.__version__}"


def main(ckpt: str, out: str, control: str, *names: str) -> None:
    if unknown := [n for n in (control, *names) if n not in SETTINGS]:
        raise SystemExit(f"timing.py: unknown settings {unknown} (settings.py has {', '.join(SETTINGS)})")
    pipe = OmniGenPipeline.from_checkpoint(ckpt)
    samples = {f: [sample_at(i, EVAL_SEED_OFFSET, {f: 1.0}, SIZE) for i in range(SAMPLES)] for f in FAMILIES}
    calls, rows = {}, {}
    for name in (control, *names):
        for family in FAMILIES:
            for batch in BATCHES:
                key = f"{name}|{family}|{batch}"
                calls[key] = sampler(pipe, samples[family], SETTINGS[name], batch)
                before = pipe.transformer_rows
                calls[key]()  # once untimed: the rows it runs (the same every call)
                rows[key] = (pipe.transformer_rows - before) / SAMPLES
    print(f"timing {len(calls)} calls × {REPEATS} repeats on {torch.get_num_threads()} threads", flush=True)
    with torch.no_grad():
        seconds, _, _ = alternate(calls, REPEATS, torch.device("cpu"))
    table = []
    for key, median in seconds.items():
        name, family, batch = key.split("|")
        control_seconds = seconds[f"{control}|{family}|{batch}"]
        table.append(
            {
                "setting": name,
                "family": family,
                "batch": int(batch),
                "seconds_per_image": median / SAMPLES,
                "speed_up": control_seconds / median,
                "transformer_rows_per_image": rows[key],
            }
        )
        print(
            f"{name:>16} {family:>14} batch {batch:>2}: {median / SAMPLES:.4f} s/image, ×{control_seconds / median:.2f}"
        )
    Path(out).write_text(
        json.dumps(
            {
                "ckpt": ckpt,
                "control": control,
                "samples_per_family": SAMPLES,
                "repeats": REPEATS,
                "threads": torch.get_num_threads(),
                "machine": machine(),
                "rows": table,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__.strip().splitlines()[0])
    main(*sys.argv[1:])
