"""Corpus recipes: one module per corpus layout, registered in ``CORPORA`` and chosen by name with
:func:`get_recipe`; ``talkface prepare <name>`` is generated for each.

A recipe walks a corpus folder and returns a :class:`Discovery` (clips with their split, transcript,
word timings and flags, plus folder-level problems) without decoding any media.
"""

from talkface.preprocess.corpora import folder, grid, lrs, tcd_timit, voxceleb  # noqa: F401  (registers the recipes)
from talkface.preprocess.corpora.base import (
    CORPORA,
    ClipSource,
    CorpusError,
    CorpusRecipe,
    Discovery,
    HashSplitRule,
    RecipeOption,
    available_recipes,
    get_recipe,
    hash_fraction,
)

__all__ = [
    "CORPORA",
    "ClipSource",
    "CorpusError",
    "CorpusRecipe",
    "Discovery",
    "HashSplitRule",
    "RecipeOption",
    "available_recipes",
    "get_recipe",
    "hash_fraction",
]
