"""Built-in baselines: the reference methods every comparison table needs, one registry.

Each baseline is a :class:`~talkface.generation.method.Method` run by
:func:`~talkface.generation.part.generate_part`, exactly like the trained pipeline of
``generate --data``: one ``<clip_id>.mp4`` per usable clip of a part, the reference crop's frame count,
the clip's audio track, the same codec and quality (:data:`~talkface.generation.generator.VIDEO_CODEC`),
and a ``generation.json`` with the baseline's definition and the SHA-256 of every checkpoint it loaded.
``talkface baseline <name>`` is generated from :data:`BASELINES`, so a registered baseline always has
its command.

What each one isolates (docs/baselines.md):

- ``ground-truth``: the reference crops re-encoded: the codec's own floor for every metric;
- ``static-frame``: the identity frame repeated: what a method must beat to claim any motion at all;
- ``mean-face``: the landmark stage replaced by the mean face (mouth held still), then the trained
  retargeting and texture stages: what the landmark stage adds;
- ``oracle-landmarks``: the texture stage driven by the reference's own aligned landmarks: the texture
  stage's ceiling, free of landmark errors;
- ``no-blinks``: the full pipeline with the blink stage off: the ablation the blink claim needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from talkface.generation.method import Method, TrainedPipeline
from talkface.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from talkface.generation.generator import ClipInputs, Generator

# Light on purpose (no numpy, torch or media at import): ``talkface baseline <name>`` commands are
# generated from this registry when the CLI starts; each method imports its work when it runs.
BASELINES: Registry[type[Method]] = Registry("baseline")


@BASELINES.register_named("ground-truth")
class GroundTruth(Method):
    definition = ("the reference crops decoded and re-encoded with the codec and quality generate uses "
                  "(the codec's own floor for every metric)")

    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterable[np.ndarray]:
        return clip.reference_frames()


@BASELINES.register_named("static-frame")
class StaticFrame(Method):
    definition = ("the identity frame generate uses (the clip's frame with the most closed, neutral mouth "
                  "among its frames with both eyes open, from its aligned crops) repeated for every frame")

    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterator[np.ndarray]:
        for _ in range(clip.n_frames):
            yield clip.identity_crop


@BASELINES.register_named("mean-face")
class MeanFace(Method):
    definition = ("the landmark stage replaced by the mean face of the landmark checkpoint (mouth held at "
                  "the mean shape, no blinks), then the trained retargeting to the identity frame and the "
                  "trained texture stage")
    stages = ("landmarks", "texture")

    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterable[np.ndarray]:
        import numpy as np

        from talkface.generation.generator import render_frames, to_identity

        crop, px = clip.identity_at(gen.size)
        unit = np.repeat(gen.mean_face[None], clip.n_frames, axis=0)
        return render_frames(gen, crop, to_identity(gen, unit, px, gen.size))


@BASELINES.register_named("oracle-landmarks")
class OracleLandmarks(Method):
    definition = ("the trained texture stage driven by the reference clip's own aligned landmarks (the "
                  "texture stage's ceiling, free of landmark-stage errors), identity frame as generate's; "
                  "the generator's whole frame (not pasted into the identity outside mouth and eyes, since "
                  "these landmarks carry the clip's head motion)")
    stages = ("texture",)

    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterable[np.ndarray]:
        import numpy as np

        from talkface.generation.generator import render_frames

        crop, _ = clip.identity_at(gen.size)
        points = fill_missing(clip.reference_landmarks) * np.float32(gen.size / clip.crop_size)
        return render_frames(gen, crop, points, paste=False)


@BASELINES.register_named("no-blinks")
class NoBlinks(TrainedPipeline):
    definition = ("the trained pipeline with the blink stage off: the eye points stay the landmark stage's "
                  "(same landmarks, retargeting and texture stages as generate, same seed)")
    stages = ("landmarks", "texture")
    blinks = False


def fill_missing(points: np.ndarray) -> np.ndarray:
    """(T, 68, 2) landmarks with each frame lacking points replaced by the nearest frame that has them."""
    import numpy as np

    valid = np.flatnonzero(np.isfinite(points).all(axis=(1, 2)))
    if len(valid) == len(points) or not len(valid):
        return points
    nearest = valid[np.abs(np.arange(len(points))[:, None] - valid[None]).argmin(axis=1)]
    return points[nearest]


def get_baseline(name: str) -> Method:
    """A fresh instance of the baseline ``name`` (``UnknownName`` listing the baselines otherwise)."""
    return BASELINES.get(name)()
