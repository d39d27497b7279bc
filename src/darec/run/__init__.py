"""Run folders: what a training run leaves on disk and how everything else reads it back.

``checkpoint`` writes and reads the files (safetensors + JSON, atomic); ``folder`` turns a run
folder into a config, id maps, a dataset and a model on a device."""

from darec.run.checkpoint import checkpoint_path, load_checkpoint, provenance
from darec.run.folder import (
    RunFolder,
    check_run_data,
    load_data,
    load_trained_model,
    with_absolute_paths,
)

__all__ = [
    "RunFolder",
    "check_run_data",
    "checkpoint_path",
    "load_checkpoint",
    "load_data",
    "load_trained_model",
    "provenance",
    "with_absolute_paths",
]
