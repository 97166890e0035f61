"""Convert between the released OmniGen-v1 layout, omnigen's native checkpoints and diffusers 0.42.

    python -m omnigen.convert from-release RELEASE_DIR OUT_DIR [--vae SDXL_VAE_DIR] [--overwrite]
    python -m omnigen.convert to-diffusers CKPT OUT_DIR [--transformer-only] [--dtype bfloat16] [--overwrite]

Sub-commands with positional paths (argparse), not the key=value style of the other commands: a
conversion is two paths and a direction, which read best as `convert DIRECTION FROM TO`; there are no
nested settings for key=value to address. The release's layout and its import are in
omnigen.checkpoints.release, the diffusers export in omnigen.checkpoints.diffusers.
"""

from __future__ import annotations

import argparse
import logging

from omnigen.checkpoints.diffusers import DTYPES, export_diffusers
from omnigen.checkpoints.native import export_module, load_module
from omnigen.checkpoints.release import import_release
from omnigen.training.finetune import has_lora, merge_lora
from omnigen.utils.cli import run_main

log = logging.getLogger(__name__)


# ---- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m omnigen.convert", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    release = commands.add_parser("from-release", help="OmniGen-v1 release directory -> omnigen exported directory")
    release.add_argument("release_dir")
    release.add_argument("out", help="the directory to write (OmniGenPipeline.from_checkpoint reads it)")
    release.add_argument("--vae", help="local diffusers AutoencoderKL directory (when the release has no vae/)")
    to_diffusers = commands.add_parser("to-diffusers", help="native checkpoint -> diffusers OmniGenPipeline directory")
    to_diffusers.add_argument("ckpt", help="a checkpoint file or an exported directory")
    to_diffusers.add_argument("out", help="the directory to write")
    to_diffusers.add_argument("--transformer-only", action="store_true", help="write transformer/ only")
    to_diffusers.add_argument("--dtype", choices=sorted(DTYPES), help="cast the transformer's weights")
    for sub in (release, to_diffusers):
        sub.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "from-release":
        path = export_module(import_release(args.release_dir, args.vae), args.out, overwrite=args.overwrite)
    else:
        module = load_module(args.ckpt)
        if has_lora(module.transformer):
            merge_lora(module)
        path = export_diffusers(
            module,
            args.out,
            transformer_only=args.transformer_only,
            dtype=DTYPES.get(args.dtype),
            overwrite=args.overwrite,
        )
    log.info("wrote %s", path)


if __name__ == "__main__":
    run_main(main, "omnigen.convert")
