"""Corpus recipes: one module per corpus layout, registered in ``CORPORA`` and chosen by name with
:func:`get_recipe`; ``talkface prepare <name>`` is generated for each.

A recipe walks a corpus folder and returns a :class:`Discovery` (clips with their split, transcript,
word timings and flags, plus folder-level problems) without decoding any media.

The package's names are those of ``base.__all__`` (``CORPORA``, ``get_recipe``, ``ClipSource``, ...).
"""

from talkface.prepare.corpora import base, folder, grid, lrs, tcd_timit, voxceleb  # noqa: F401  (registers the recipes)
from talkface.prepare.corpora.base import *  # noqa: F403  (exactly base.__all__)

__all__ = list(base.__all__)
