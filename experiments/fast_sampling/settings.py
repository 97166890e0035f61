"""The sampler settings the fast_sampling experiment compares, by name: what `python -m omnigen.evaluate` and
`OmniGenPipeline.generate` take. `python experiments/fast_sampling/settings.py NAME` prints one as evaluate's
key=value arguments (run.sh reads them so); timing.py imports the table."""

from __future__ import annotations

import sys

CONTROL = "c20"  # today's default: 20 uniform Euler steps, guidance (2.0 text / 1.5 image) at every step
SETTINGS: dict[str, dict[str, object]] = {
    CONTROL: {"num_inference_steps": 20},
    # fewer uniform steps
    "e10": {"num_inference_steps": 10},
    "e8": {"num_inference_steps": 8},
    "e6": {"num_inference_steps": 6},
    "e5": {"num_inference_steps": 5},
    "e4": {"num_inference_steps": 4},
    # time-shifted schedules: k > 1 more steps near noise, k < 1 near data
    "e8_k0.5": {"num_inference_steps": 8, "schedule_shift": 0.5},
    "e8_k2": {"num_inference_steps": 8, "schedule_shift": 2.0},
    "e8_k3": {"num_inference_steps": 8, "schedule_shift": 3.0},
    "e6_k2": {"num_inference_steps": 6, "schedule_shift": 2.0},
    # guidance on an interval of t (0 noise, 1 data); the conditional branch alone elsewhere
    "c20_g0-0.5": {"num_inference_steps": 20, "guidance_interval": [0.0, 0.5]},
    "c20_g0-0.75": {"num_inference_steps": 20, "guidance_interval": [0.0, 0.75]},
    "c20_g0.25-1": {"num_inference_steps": 20, "guidance_interval": [0.25, 1.0]},
    # step caching: skip while x_t changed less than τ since the last computed step
    "c20_tc0.1": {"num_inference_steps": 20, "step_cache": 0.1},
    "c20_tc0.2": {"num_inference_steps": 20, "step_cache": 0.2},
    "c20_tc0.3": {"num_inference_steps": 20, "step_cache": 0.3},
    "c20_tc0.2_o0": {"num_inference_steps": 20, "step_cache": 0.2, "step_cache_order": 0},
    # combinations
    "e10_g0-0.5": {"num_inference_steps": 10, "guidance_interval": [0.0, 0.5]},
    "e8_k2_g0-0.5": {"num_inference_steps": 8, "schedule_shift": 2.0, "guidance_interval": [0.0, 0.5]},
    "e10_tc0.2": {"num_inference_steps": 10, "step_cache": 0.2},
    # added after the first screen, where e8_k0.5 scored best among the 8-step settings
    "e6_k0.5": {"num_inference_steps": 6, "schedule_shift": 0.5},
    "e5_k0.5": {"num_inference_steps": 5, "schedule_shift": 0.5},
    "e8_k0.5_g0-0.5": {"num_inference_steps": 8, "schedule_shift": 0.5, "guidance_interval": [0.0, 0.5]},
    "c20_k0.5_tc0.2_o0": {"num_inference_steps": 20, "schedule_shift": 0.5, "step_cache": 0.2, "step_cache_order": 0},
    # what the skip decision costs: a threshold nothing stays under computes every step, as c20, through the cache
    "c20_tc1e-9": {"num_inference_steps": 20, "step_cache": 1e-9},
}


def evaluate_arguments(name: str) -> list[str]:
    """SETTINGS[name] as evaluate's key=value arguments."""
    return [f"{key}={str(value).replace(' ', '')}" for key, value in SETTINGS[name].items()]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SETTINGS:
        raise SystemExit(f"usage: settings.py NAME (one of {', '.join(SETTINGS)})")
    print(" ".join(evaluate_arguments(sys.argv[1])))
