"""The file contracts between talkface's parts, one module each (docs/architecture.md).

``talkface.store.dataset`` (reader) and ``talkface.store.dataset_writer`` (``prepare`` only): the prepared
dataset. ``talkface.store.results``: evaluation results. ``talkface.store.checkpoints``: training runs.
"""

from talkface.store.dataset import (
    BackendInfo,
    ClipRecord,
    Dataset,
    DatasetError,
    DatasetInfo,
    Parts,
    hash_val_split,
    is_usable,
    split_column,
    usable_mask,
)

__all__ = [
    "BackendInfo",
    "ClipRecord",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "Parts",
    "hash_val_split",
    "is_usable",
    "split_column",
    "usable_mask",
]
