"""The file contracts between talkface's parts, one module each (docs/architecture.md).

``talkface.store.dataset`` (reader) and ``talkface.store.dataset_writer`` (``prepare`` only): the prepared
dataset. ``talkface.store.results``: evaluation results. ``talkface.store.checkpoints``: training runs.

The package itself offers the dataset reader's public names (``talkface.store.dataset.__all__``):
``from talkface.store import Dataset, is_usable``.
"""

from talkface.store import dataset
from talkface.store.dataset import *  # noqa: F403  (exactly dataset.__all__)

__all__ = list(dataset.__all__)
