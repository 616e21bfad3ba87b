"""Generation: trained stages -> talking-face videos, the built-in baselines, side-by-side comparisons.

- :mod:`talkface.generation.generator`: the four stages chained (load the stages, speech features,
  landmarks, blinks, retargeting, rendering, writing the mp4), for one audio file + identity image or
  for every clip of a prepared dataset's part.
- :mod:`talkface.generation.baselines`: the reference methods every comparison table needs
  (``ground-truth``, ``static-frame``, ``mean-face``, ``oracle-landmarks``, ``no-blinks``), written
  exactly as ``generate --data`` writes the trained pipeline's videos.
- :mod:`talkface.generation.compare`: methods tiled side by side in one video with one audio track.
- :mod:`talkface.generation.cli`: the ``generate``, ``baseline <name>`` and ``compare`` commands.
"""
