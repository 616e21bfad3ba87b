"""Corpus recipes: one module per corpus layout, chosen by name with :func:`get_recipe`.

A recipe walks a corpus folder and returns a :class:`Discovery` (clips with their split, transcript,
word timings and flags, plus folder-level problems) without decoding any media.
"""

from talkface.preprocess.corpora import folder, grid, voxceleb  # noqa: F401  (registers the recipes)
from talkface.preprocess.corpora.base import (
    ClipSource,
    CorpusError,
    CorpusRecipe,
    Discovery,
    HashSplitRule,
    available_recipes,
    get_recipe,
    hash_fraction,
)

__all__ = [
    "ClipSource",
    "CorpusError",
    "CorpusRecipe",
    "Discovery",
    "HashSplitRule",
    "available_recipes",
    "get_recipe",
    "hash_fraction",
]
