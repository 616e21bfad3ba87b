"""Moved: the dataset writer is :mod:`talkface.store.dataset_writer`, the reader
:mod:`talkface.store.dataset`. This module re-exports the old names for code not yet switched."""

from talkface.store.dataset import MANIFEST_COLUMNS, rows_to_frame
from talkface.store.dataset_writer import (
    SETTINGS_FILE,
    DatasetStore,
    SettingsMismatch,
    diff_settings,
    words_array,
)

__all__ = [
    "MANIFEST_COLUMNS",
    "SETTINGS_FILE",
    "DatasetStore",
    "SettingsMismatch",
    "diff_settings",
    "rows_to_frame",
    "words_array",
]
