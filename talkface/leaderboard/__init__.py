"""Comparison tables and plots from evaluation results (``talkface leaderboard``).

load (results through ResultsStore) -> protocol (the guard) -> table (ranking, intervals, paired
tests) -> render (md, latex, csv, html); plots draws the figures; published holds the cited numbers.
See docs/leaderboard.md.
"""
