"""Corpus preparation: media I/O, landmarks, alignment, crops, speech features, the dataset store."""
