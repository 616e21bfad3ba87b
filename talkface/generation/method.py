"""What makes one video per prepared clip: the :class:`Method` interface and the trained pipeline.

Kept free of numpy, torch and media imports so that ``talkface --help`` and the commands generated
from the baselines registry start fast; the work is imported when a method runs.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from talkface.generation.generator import ClipInputs, Generator


CLIP_SEED_RULE = ("each clip's blinks are drawn with the seed sha256('<seed>:<clip id>') (first 4 bytes, "
                  "little-endian): its own blinks, the same on every rerun")


def clip_seed(seed: int, clip_id: str) -> int:
    """The blink seed of one clip of a part (:data:`CLIP_SEED_RULE`). One seed for every clip gave every
    clip the same blink times, so a part's blink rate measured one draw of a clip's length, not the
    blink stage."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()[:4], "little")


class Method(ABC):
    """The trained pipeline or a baseline, run over a dataset's part by
    :func:`talkface.generation.part.generate_part`.

    ``stages``: the trained stages it needs (loaded by :func:`~talkface.generation.generator.load_generator`,
    nothing else is read); ``definition``: one sentence saying what it computes, recorded in
    generation.json and shown by ``--help``.
    """

    name: str = ""
    definition: str = ""
    stages: tuple[str, ...] = ()

    @abstractmethod
    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterable[np.ndarray]:
        """Exactly ``clip.n_frames`` RGB uint8 frames."""

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "definition": self.definition, "stages": list(self.stages)}


class TrainedPipeline(Method):
    """The four trained stages: what ``generate --data`` writes."""

    name = "pipeline"
    definition = ("the trained pipeline: speech features -> landmark stage -> blink stage (eye points "
                  "replaced, seeded by --seed) -> retargeting to the identity frame (the clip's frame with "
                  "a closed, neutral mouth and open eyes) -> texture stage (its weight average when kept)")
    stages = ("landmarks", "blinks", "texture")
    blinks = True

    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterable[np.ndarray]:
        from talkface.generation.generator import landmarks_from_features, render_frames

        crop, px = clip.identity_at(gen.size)
        feats = gen.features.compute(clip.audio, n_frames=clip.n_frames, fps=clip.fps)
        return render_frames(gen, crop, landmarks_from_features(gen, feats, px, seed, self.blinks),
                             identity_px=px)
