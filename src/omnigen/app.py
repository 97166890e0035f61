"""An interactive page over a saved checkpoint: `python -m omnigen.app ckpt=<.ckpt or exported dir>`.

    python -m omnigen.app                          # the newest logs/**/last.ckpt; a picker over logs/
    python -m omnigen.app ckpt=logs/fit/runs/<run>/checkpoints/last.ckpt port=7861

Gradio (the optional extra `app`: pip install -e ".[app]"), on 127.0.0.1 unless host= says otherwise.
One page drives OmniGenPipeline: prompt, up to three input images (each with a button that inserts its
`<img><|image_i|></img>` placeholder), size snapped to the model's pixels per token, steps, both guidance
scales, the guidance interval (t from / to), the schedule shift, the step cache, seed, kv-cache, negative
prompt and a batch shown as a gallery, with the sampler's progress and the seconds a generation took. Requests
queue; one generation runs at a time. A mistake in the input (placeholders against images, a size, an image
too small) or a checkpoint that cannot be loaded (corrupt, another program's; the picker lists every *.ckpt
under logs/) is shown in the page, and the page keeps serving. A checkpoint named with ckpt= is loaded before
the page starts: a bad one exits with its message.
"""

from __future__ import annotations

import functools
import random
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from omnigen.data.shapes import load_shapes_tokenizer, sample_at
from omnigen.evaluation import EVAL_SEED_OFFSET
from omnigen.flow.sampler import SamplerSettings
from omnigen.pipeline import OmniGenPipeline
from omnigen.utils.cli import UserError, parse_cli, run_main

MAX_INPUTS = 3
MAX_BATCH = 8
MAX_PIPELINES = 2  # loaded checkpoints kept in memory: switching back and forth between two is instant
# A Shapes-X2I checkpoint gets clickable examples: held-out samples of these families.
EXAMPLE_FAMILIES = ("text_to_image", "mixed_modal", "visual_condition")


@dataclass
class AppConfig:
    ckpt: str | None = None  # a checkpoint file or exported directory; default: the newest last.ckpt under logs
    logs: str = "logs"  # where the checkpoint picker looks (**/*.ckpt and exported directories)
    host: str = "127.0.0.1"  # 0.0.0.0 serves every network interface: only when you mean it
    port: int = 7860
    device: str = "cpu"


def find_checkpoints(logs: str | Path) -> list[str]:
    """Checkpoint files and exported directories under `logs`, newest first."""
    root = Path(logs)
    found = [*root.glob("**/*.ckpt"), *(p.parent for p in root.glob("**/omnigen_config.json"))]
    return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def default_checkpoint(found: list[str]) -> str | None:
    """The newest last.ckpt, else the newest checkpoint of any name."""
    return next((p for p in found if Path(p).name == "last.ckpt"), found[0] if found else None)


def snap(size: float, multiple: int) -> int:
    """`size` rounded to the nearest positive multiple of `multiple` (the model's pixels per token)."""
    return max(multiple, int(round(size / multiple)) * multiple)


class Generator:
    """Pipelines by checkpoint path, the MAX_PIPELINES used last kept loaded, and one generation at a time."""

    def __init__(self, device: str = "cpu") -> None:
        self.device, self.lock = device, threading.Lock()
        self.pipelines: OrderedDict[str, OmniGenPipeline] = OrderedDict()  # least recently used first

    def pipeline(self, ckpt: str) -> OmniGenPipeline:
        if not ckpt:
            raise UserError("choose a checkpoint (none was found under the logs directory)")
        if ckpt not in self.pipelines:
            self.pipelines[ckpt] = OmniGenPipeline.from_checkpoint(ckpt, device=self.device)
            while len(self.pipelines) > MAX_PIPELINES:
                self.pipelines.popitem(last=False)
        self.pipelines.move_to_end(ckpt)
        return self.pipelines[ckpt]

    def settings(self, ckpt: str) -> tuple[int, int, int, int, SamplerSettings]:
        """(pixels per token, default height, default width, largest side, recommended sampling) of a checkpoint;
        the largest side is its position grid's (pos_embed_max_size tokens)."""
        pipe = self.pipeline(ckpt)
        step = pipe.module.pixels_per_token
        height, width = pipe.default_size or (8 * step, 8 * step)
        return step, height, width, pipe.max_side, pipe.recommended

    def __call__(
        self,
        ckpt: str,
        prompt: str,
        image_1: Image.Image | None,
        image_2: Image.Image | None,
        image_3: Image.Image | None,
        height: float,
        width: float,
        use_input_size: bool,
        steps: int,
        guidance: float,
        img_guidance: float,
        seed: int,
        random_seed: bool,
        kv_cache: bool,
        negative_prompt: str,
        batch: int,
        guide_from: float = 0.0,
        guide_to: float = 1.0,
        schedule_shift: float = 1.0,
        step_cache: float = 0.0,
        progress: Any = None,  # the page passes gr.Progress(track_tqdm=True): the sampler's tqdm steps drive it
    ) -> tuple[list[Image.Image], int, str]:
        """Images for the page's settings, the seed used and a line on the time taken. A mistake in the
        input (placeholders, sizes, a file) comes back as a message in the page; the server keeps going."""
        import gradio as gr

        try:
            pipe = self.pipeline(ckpt)
            inputs = [im for im in (image_1, image_2, image_3) if im is not None]
            step = pipe.module.pixels_per_token
            seed = random.randrange(2**31) if random_seed else int(seed)
            with self.lock:
                start = time.perf_counter()
                out = pipe(
                    [prompt] * int(batch),
                    [inputs] * int(batch),
                    height=None if use_input_size else snap(height, step),
                    width=None if use_input_size else snap(width, step),
                    use_input_image_size_as_output=use_input_size,
                    num_inference_steps=int(steps),
                    guidance_scale=float(guidance),
                    img_guidance_scale=float(img_guidance),
                    negative_prompt=negative_prompt,
                    seed=seed,
                    use_kv_cache=kv_cache,
                    # guidance only for t in [from, to] (0 noise, 1 data); [0, 1] is every step (None would be
                    # the checkpoint's recommendation, which the sliders started at)
                    guidance_interval=(float(guide_from), float(guide_to)),
                    schedule_shift=float(schedule_shift),
                    step_cache=float(step_cache),
                )
                seconds = time.perf_counter() - start
        except UserError as error:  # anything else is a bug: Gradio reports it and keeps serving too
            raise gr.Error(str(error), print_exception=False) from error
        h, w = out[0].height, out[0].width
        return out, seed, f"{len(out)} image(s) of {w}×{h} in {seconds:.2f} s (seed {seed}, {int(steps)} steps)"


def is_shapes_model(pipe: OmniGenPipeline) -> bool:
    """Whether the checkpoint speaks the Shapes-X2I vocabulary (its tokenizer is the shipped one)."""
    return pipe.module.processor.tokenizer.get_vocab() == load_shapes_tokenizer().get_vocab()


def shapes_examples(size: int, folder: Path) -> list[list[Any]]:
    """[prompt, input image path or None] for a held-out sample of each example family."""
    rows = []
    for family in EXAMPLE_FAMILIES:
        sample = sample_at(0, EVAL_SEED_OFFSET, {family: 1.0}, size)
        path = None
        if sample.input_images:
            path = folder / f"{family}.png"
            Image.fromarray(sample.input_images[0]).save(path)
        rows.append([sample.instruction, str(path) if path else None])
    return rows


def sampler_values(settings: SamplerSettings) -> tuple[float, ...]:
    """The page's sampling sliders' values for `settings`: steps, guidance, image guidance, guide from / to t,
    schedule shift, step cache (its order is not on the page: the checkpoint's applies)."""
    low, high = settings.guidance_interval or (0.0, 1.0)
    return (settings.num_inference_steps, settings.guidance_scale, settings.img_guidance_scale, low, high,
            settings.schedule_shift, settings.step_cache)  # fmt: skip


def build_app(generator: Generator, checkpoints: list[str], ckpt: str | None) -> Any:
    import gradio as gr

    # the sampler's tqdm steps drive the page's progress bar
    generate = functools.partial(generator.__call__, progress=gr.Progress(track_tqdm=True))

    def checkpoint_settings(ckpt):  # a newly chosen checkpoint's sizes and recommended sampling
        try:
            step, height, width, largest, recommended = generator.settings(ckpt)
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error
        sizes = tuple(gr.update(value=v, step=step, minimum=step, maximum=largest) for v in (height, width))
        return sizes + tuple(gr.update(value=v) for v in sampler_values(recommended))

    step, height, width, largest, recommended, problem = 16, 256, 256, 3072, SamplerSettings(), None
    try:
        if ckpt:
            step, height, width, largest, recommended = generator.settings(ckpt)
    except UserError as error:  # the newest checkpoint under logs/ may be corrupt or another program's
        problem, ckpt = str(error), None
    steps_0, guidance_0, img_guidance_0, from_0, to_0, shift_0, cache_0 = sampler_values(recommended)
    with gr.Blocks(title="omnigen") as app:
        gr.Markdown("## omnigen: generate from a checkpoint")
        if problem:
            gr.Markdown(f"**Could not load the checkpoint:** {problem}. Choose another one.", elem_id="problem")
        with gr.Row():
            ckpt_box = gr.Dropdown(checkpoints, value=ckpt, label="checkpoint", allow_custom_value=True, scale=4)
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(
                    label="prompt", lines=3, placeholder="a red circle at the center on a white background"
                )
                with gr.Row():
                    images, inserts = [], []
                    for i in range(1, MAX_INPUTS + 1):
                        with gr.Column(min_width=120):
                            images.append(gr.Image(type="pil", label=f"input image {i}", height=160))
                            inserts.append(gr.Button(f"insert <img><|image_{i}|></img>", size="sm"))
                negative = gr.Textbox(label="negative prompt", value="")
                with gr.Row():
                    height_box = gr.Slider(step, largest, value=height, step=step, label="height")
                    width_box = gr.Slider(step, largest, value=width, step=step, label="width")
                    use_input_size = gr.Checkbox(False, label="size of input image 1")
                with gr.Row():
                    steps = gr.Slider(1, 100, value=steps_0, step=1, label="steps")
                    guidance = gr.Slider(1.0, 10.0, value=guidance_0, step=0.1, label="guidance")
                    img_guidance = gr.Slider(1.0, 5.0, value=img_guidance_0, step=0.1, label="image guidance")
                with gr.Row():  # the guidance interval: guided steps only for t in [from, to] (0 noise, 1 data)
                    guide_from = gr.Slider(0.0, 1.0, value=from_0, step=0.05, label="guide from t")
                    guide_to = gr.Slider(0.0, 1.0, value=to_0, step=0.05, label="guide to t")
                    shift = gr.Slider(0.25, 8.0, value=shift_0, step=0.25, label="schedule shift")
                    step_cache = gr.Slider(0.0, 0.5, value=cache_0, step=0.01, label="step cache (skip below)")
                with gr.Row():
                    seed = gr.Number(0, precision=0, label="seed")
                    random_seed = gr.Checkbox(False, label="random seed")
                    kv_cache = gr.Checkbox(True, label="kv-cache")
                    batch = gr.Slider(1, MAX_BATCH, value=1, step=1, label="images")
                run = gr.Button("generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                gallery = gr.Gallery(
                    label="images", columns=2, height=420, object_fit="contain", format="png", elem_id="gallery"
                )
                used_seed = gr.Number(label="seed used", precision=0, interactive=False)
                timing = gr.Textbox(label="time", interactive=False, elem_id="timing")
        for i, button in enumerate(inserts, start=1):
            button.click(
                lambda text, i=i: (text or "") + f"<img><|image_{i}|></img> ", prompt, prompt, api_visibility="private"
            )
        ckpt_box.change(
            checkpoint_settings,
            ckpt_box,
            [height_box, width_box, steps, guidance, img_guidance, guide_from, guide_to, shift, step_cache],
            api_visibility="private",
        )
        inputs = [ckpt_box, prompt, *images, height_box, width_box, use_input_size, steps, guidance, img_guidance,
                  seed, random_seed, kv_cache, negative, batch, guide_from, guide_to,
                  shift, step_cache]  # fmt: skip
        run.click(generate, inputs, [gallery, used_seed, timing], api_name="generate")
        if ckpt and is_shapes_model(generator.pipeline(ckpt)):
            folder = Path(tempfile.mkdtemp(prefix="omnigen-app-examples-"))
            gr.Examples(shapes_examples(height, folder), [prompt, images[0]], label="Shapes-X2I examples")
    return app.queue(default_concurrency_limit=1)  # requests wait their turn; the model runs one at a time


def main(argv: list[str] | None = None) -> None:
    cfg = parse_cli(AppConfig, argv, "omnigen.app", "ckpt=logs/fit/runs/<run>/checkpoints/last.ckpt", __doc__)
    found = find_checkpoints(cfg.logs)
    ckpt = cfg.ckpt or default_checkpoint(found)
    if ckpt and ckpt not in found:
        found.insert(0, ckpt)
    generator = Generator(cfg.device)
    if cfg.ckpt:
        generator.pipeline(cfg.ckpt)  # named on the command line: a bad one stops here, with its message
    build_app(generator, found, ckpt).launch(server_name=cfg.host, server_port=cfg.port)


if __name__ == "__main__":
    run_main(main, "omnigen.app")
