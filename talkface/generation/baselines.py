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
- ``no-blinks``: the full pipeline with the blink stage off: the ablation the blink claim needs;
- ``warp``: the identity frame warped (piecewise-affine mesh of the 68 points) to the trained landmark
  and blink stages' retargeted landmarks, with a mouth-interior rule: what warping alone gives, with
  no texture stage, on any face;
- ``oracle-warp``: the same warp driven by the reference clip's own landmarks: warping's ceiling.
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
        return render_frames(gen, crop, to_identity(gen, unit, px, gen.size), identity_px=px)


@BASELINES.register_named("oracle-landmarks")
class OracleLandmarks(Method):
    definition = ("the trained texture stage driven by the reference clip's own aligned landmarks (the "
                  "texture stage's ceiling, free of landmark-stage errors), identity frame as generate's; "
                  "composed as generate's frames under the interior rule (over the identity warped to these "
                  "landmarks, which carry the clip's head motion); under face-parts the generator's whole "
                  "frame (pasting into the still identity would drop that head motion)")
    stages = ("texture",)

    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterable[np.ndarray]:
        import numpy as np

        from talkface.generation.generator import render_frames

        crop, px = clip.identity_at(gen.size)
        points = fill_missing(clip.reference_landmarks) * np.float32(gen.size / clip.crop_size)
        return render_frames(gen, crop, points, paste=False, identity_px=px)


@BASELINES.register_named("no-blinks")
class NoBlinks(TrainedPipeline):
    definition = ("the trained pipeline with the blink stage off: the eye points stay the landmark stage's "
                  "(same landmarks, retargeting and texture stages as generate, same seed)")
    stages = ("landmarks", "texture")
    blinks = False


@BASELINES.register_named("warp")
class Warp(Method):
    definition = ("the identity frame warped (piecewise-affine on a fixed Delaunay mesh of its 68 points and "
                  "8 border points) to the landmarks of the trained landmark and blink stages retargeted to "
                  "it, the inner mouth darkened towards a cavity colour; no texture stage")
    stages = ("landmarks", "blinks")
    warp = "piecewise-affine"

    def targets(self, gen: Generator, clip: ClipInputs, seed: int) -> np.ndarray:
        from talkface.generation.generator import FPS, speech_landmarks, to_identity
        from talkface.models.blinks import impose_blinks

        feats = gen.features.compute(clip.audio, n_frames=clip.n_frames, fps=clip.fps)
        unit = impose_blinks(speech_landmarks(gen, feats),
                             gen.blink_model.sample(clip.n_frames, FPS, generator_seed=seed))
        return to_identity(gen, unit, clip.identity_px, clip.crop_size)

    def frames(self, gen: Generator, clip: ClipInputs, seed: int) -> Iterable[np.ndarray]:
        from talkface.generation.warp import warp_frames

        return warp_frames(clip.identity_crop, clip.identity_px, self.targets(gen, clip, seed), self.warp)


@BASELINES.register_named("warp-tps")
class WarpThinPlate(Warp):
    definition = ("as warp, with a thin-plate spline through the 68 points and 8 border points instead of "
                  "the piecewise-affine mesh")
    warp = "thin-plate"


@BASELINES.register_named("oracle-warp")
class OracleWarp(Warp):
    definition = ("the identity frame warped (piecewise-affine, as warp) to the reference clip's own aligned "
                  "landmarks, which carry its head motion: warping's ceiling, free of landmark-stage errors")
    stages = ()

    def targets(self, gen: Generator, clip: ClipInputs, seed: int) -> np.ndarray:
        return fill_missing(clip.reference_landmarks)


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
