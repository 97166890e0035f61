"""Convert between the released OmniGen-v1 layout, omnigen's native checkpoints and diffusers 0.42.

    python -m omnigen.convert from-release RELEASE_DIR OUT_DIR [--vae SDXL_VAE_DIR] [--overwrite]
    python -m omnigen.convert to-diffusers CKPT OUT_DIR [--transformer-only] [--dtype bfloat16] [--overwrite]
    python -m omnigen.convert consolidate SHARDED_CKPT_DIR OUT.ckpt [--overwrite]

Sub-commands with positional paths (argparse), not the key=value style of the other commands: a
conversion is two paths and a direction, which read best as `convert DIRECTION FROM TO`; there are no
nested settings for key=value to address. The release's layout and its import are in
omnigen.checkpoints.release, the diffusers export in omnigen.checkpoints.diffusers, and the consolidation
of a sharded checkpoint (trainer=fsdp with save_distributed_checkpoint=true) into the one self-describing
file every other command reads in omnigen.checkpoints.sharded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from omnigen.checkpoints.diffusers import DTYPES, export_diffusers
from omnigen.checkpoints.format import CheckpointError, check_path, check_resume_checkpoint
from omnigen.checkpoints.native import export_module, load_module
from omnigen.checkpoints.release import import_release
from omnigen.checkpoints.sharded import consolidate
from omnigen.training.finetune import has_lora, merge_lora
from omnigen.utils.cli import OutputExists, run_main

log = logging.getLogger(__name__)


def consolidate_checkpoint(ckpt: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """The sharded checkpoint `ckpt` as one checkpoint file `out`, its description checked first."""
    if check_path(ckpt, "pass a checkpoint directory written with save_distributed_checkpoint=true") != "sharded":
        raise CheckpointError(f"{ckpt} is not a sharded checkpoint directory: there is nothing to consolidate")
    check_resume_checkpoint(ckpt)  # its `omnigen` section
    if Path(out).exists() and not overwrite:
        raise OutputExists(f"{out} exists; choose another path or pass --overwrite")
    return consolidate(ckpt, out)


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
    sharded = commands.add_parser("consolidate", help="sharded checkpoint directory -> one checkpoint file")
    sharded.add_argument("ckpt", help="a checkpoint directory written with save_distributed_checkpoint=true")
    sharded.add_argument("out", help="the .ckpt file to write (resumable, and read by every omnigen command)")
    for sub in (release, to_diffusers, sharded):
        sub.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "consolidate":
        path = consolidate_checkpoint(args.ckpt, args.out, overwrite=args.overwrite)
    elif args.command == "from-release":
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
