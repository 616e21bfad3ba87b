"""Corpus recipes: one module per corpus layout, registered in ``CORPORA`` and chosen by name with
:func:`get_recipe`; ``talkface prepare <name>`` is generated for each.

A recipe walks a corpus folder and returns a :class:`Discovery` (clips with their split, transcript,
word timings and flags, plus folder-level problems) without decoding any media.

The package's names are ``base.__all__`` (``CORPORA``, ``ClipSource``, ...) plus :func:`get_recipe` and
:func:`available_recipes`, defined here, after every recipe module has registered.
"""

from talkface.prepare.corpora import base, folder, grid, lrs, tcd_timit, voxceleb  # noqa: F401  (registers the recipes)
from talkface.prepare.corpora.base import *  # noqa: F403  (exactly base.__all__)
from talkface.prepare.corpora.base import CORPORA, CorpusError, CorpusRecipe
from talkface.registry import UnknownName

__all__ = [*base.__all__, "available_recipes", "get_recipe"]


def available_recipes() -> list[str]:
    return CORPORA.names()


def get_recipe(name: str) -> CorpusRecipe:
    """The recipe registered under ``name`` (``grid``, ``folder``, ``voxceleb``)."""
    try:
        return CORPORA.get(name)()
    except UnknownName:
        known = ", ".join(available_recipes())
        raise CorpusError(f"unknown corpus recipe {name!r}; available: {known}") from None

