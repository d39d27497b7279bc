"""Run folders: what a training run leaves on disk and how everything else reads it back.

``checkpoint`` writes and reads the files (safetensors + JSON, atomic); ``folder`` turns a run
folder into a config, id maps, a dataset and a model on a device; ``fingerprint`` records the
data a run was trained on and notices when it changed."""

from darec.run.checkpoint import checkpoint_path, load_checkpoint, provenance
from darec.run.fingerprint import check_data_unchanged, data_fingerprint
from darec.run.folder import (
    RunFolder,
    check_run_data,
    data_config,
    load_data,
    load_trained_model,
    with_absolute_paths,
)

__all__ = [
    "RunFolder",
    "check_run_data",
    "data_config",
    "check_data_unchanged",
    "checkpoint_path",
    "data_fingerprint",
    "load_checkpoint",
    "load_data",
    "load_trained_model",
    "provenance",
    "with_absolute_paths",
]
