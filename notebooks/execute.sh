#!/usr/bin/env bash
# Re-executes notebooks/inference.ipynb on the quickstart's checkpoint and stores it with its outputs.
#   notebooks/execute.sh            # fits the checkpoint first if logs/notebook/ has none (README's quickstart, seed 0)
#   THREADS=2 notebooks/execute.sh  # the fit on two threads (default one, to share the machine)
# The checkpoint stays out of git (*.ckpt); the kernel runs in notebooks/, so OMNIGEN_CKPT is relative to it.
set -euo pipefail
cd "$(dirname "$0")/.."
run=logs/notebook
ckpt=$run/checkpoints/last.ckpt
if [ ! -f "$ckpt" ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=${THREADS:-1} python -m omnigen.fit logger=csv hydra.run.dir=$run
  echo $(( $(date +%s) - start )) > "$run/fit_seconds"
fi
OMNIGEN_CKPT=../$ckpt python - <<'PY'
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

path = Path("notebooks/inference.ipynb")
notebook = nbformat.read(path, as_version=4)
for cell in notebook.cells:  # a clean start: no outputs or counts from an earlier run
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
notebook.metadata.pop("widgets", None)
nbformat.write(notebook, path)
print(f"{path}: {path.stat().st_size} bytes, executed on {os.environ['OMNIGEN_CKPT']}")
PY
