"""Data pipeline: readers -> preprocess (dedup, k-core, remap, sort) -> leave-one-out split.

``batching`` (training windows and torch batches) is imported separately, so that reading data
does not import torch.
"""

from darec.data.dataset import dataset_key, dataset_name, load_dataset
from darec.data.info import dataset_stats
from darec.data.preprocess import preprocess
from darec.data.readers import READERS, read_raw
from darec.data.split import EvalSet, Split, leave_one_out
from darec.data.types import PAD, RawData, SequenceDataset

__all__ = [
    "PAD",
    "RawData",
    "SequenceDataset",
    "READERS",
    "read_raw",
    "preprocess",
    "EvalSet",
    "Split",
    "leave_one_out",
    "load_dataset",
    "dataset_name",
    "dataset_key",
    "dataset_stats",
]
