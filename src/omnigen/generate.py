"""Images from a saved checkpoint on the command line.

    python -m omnigen.generate ckpt=logs/quickstart/runs/<run>/checkpoints/last.ckpt \\
        prompt="a large red circle at the center on a white background" out=circle.png
    python -m omnigen.generate ckpt=... prompt="<img><|image_1|></img> make the red circle green" \\
        input_images=[circle.png] out=green.png

Keys are the `OmniGenPipeline.__call__` arguments (key=value, OmegaConf syntax). `ckpt` is a
Lightning checkpoint or an exported directory. Several prompts (`prompt=[...]`, with
`input_images` as one list per prompt) write `<out stem>_<i><suffix>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from omnigen.pipeline import OmniGenPipeline
from omnigen.utils.cli import parse_cli, run_main


@dataclass
class GenerateConfig:
    ckpt: str = MISSING
    prompt: Any = MISSING  # a string, or a list of strings
    input_images: list[Any] = field(default_factory=list)  # paths; one list per prompt for several prompts
    out: str = "generated.png"
    height: int | None = None  # None: the checkpoint's training size
    width: int | None = None
    # The sampling settings: null takes the checkpoint's recommendation (its run config's `sampling`, shown by
    # `OmniGenPipeline.recommended`; a checkpoint without one: 20 uniform Euler steps, guidance 2.0 / 1.5 throughout)
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    img_guidance_scale: float | None = None
    negative_prompt: str = ""
    seed: int = 0
    use_kv_cache: bool = True
    # [low, high]: text and image guidance only at steps with t in it (0 noise, 1 data), the conditional branch
    # alone at the others (one branch instead of two or three); [0,1] guides every step
    guidance_interval: list[float] | None = None
    schedule_shift: float | None = None  # > 1: more of the steps near noise (SD3's time shift), < 1 near data
    shift_reference_size: int | None = None  # the side schedule_shift holds at; it scales with the image's (0: off)
    step_cache: float | None = None  # > 0: skip the model at steps whose input changed less than this (relative L1)
    step_cache_order: int | None = None  # at a skipped step: 0 the last velocity, 1 extrapolated from the last two
    use_input_image_size_as_output: bool = False
    max_input_image_size: int = 1024
    device: str = "cpu"
    progress: bool = True


def output_paths(out: str, n: int) -> list[Path]:
    path = Path(out)
    return [path] if n == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(n)]


def main(argv: list[str] | None = None) -> list[Path]:
    cfg = parse_cli(GenerateConfig, argv, "omnigen.generate", 'ckpt=path/last.ckpt prompt="a red circle"', __doc__)
    prompt = cfg.prompt if isinstance(cfg.prompt, str) else [str(p) for p in cfg.prompt]
    pipe = OmniGenPipeline.from_checkpoint(cfg.ckpt, device=cfg.device)
    images = pipe(
        prompt,
        input_images=cfg.input_images or None,
        height=cfg.height,
        width=cfg.width,
        num_inference_steps=cfg.num_inference_steps,
        guidance_scale=cfg.guidance_scale,
        img_guidance_scale=cfg.img_guidance_scale,
        negative_prompt=cfg.negative_prompt,
        seed=cfg.seed,
        use_kv_cache=cfg.use_kv_cache,
        use_input_image_size_as_output=cfg.use_input_image_size_as_output,
        max_input_image_size=cfg.max_input_image_size,
        progress=cfg.progress,
        guidance_interval=cfg.guidance_interval,
        schedule_shift=cfg.schedule_shift,
        shift_reference_size=cfg.shift_reference_size,
        step_cache=cfg.step_cache,
        step_cache_order=cfg.step_cache_order,
    )
    paths = output_paths(cfg.out, len(images))
    for image, path in zip(images, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        print(path)
    return paths


if __name__ == "__main__":
    run_main(main, "omnigen.generate")
