"""Corpus preparation: the corpus recipes, the per-clip work, the prepare run and its command."""
