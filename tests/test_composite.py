"""Pasting the generated mouth and eyes into the identity frame: where each pixel comes from."""

from __future__ import annotations

import numpy as np

from talkface.core.alignment import load_template
from talkface.generation.composite import motion_mask, paste_into_identity


def test_mouth_and_eyes_are_generated_and_the_background_is_the_identity() -> None:
    size = 128
    face = load_template(size).astype(np.float64)[None]
    generated = np.full((1, size, size, 3), 200, np.uint8)
    identity = np.full((size, size, 3), 10, np.uint8)
    out = paste_into_identity(generated, identity, face)
    for centre in (face[0, 48:68].mean(0), face[0, 36:42].mean(0), face[0, 42:48].mean(0)):
        x, y = np.floor(centre).astype(int)
        assert (out[0, y, x] == 200).all()  # inside: the generator's pixel, exactly
    for x, y in ((0, 0), (size - 1, 0), (0, size - 1), (size - 1, size - 1)):
        assert (out[0, y, x] == 10).all()  # corners: the identity frame's pixel, exactly
    between = out[0, :, :, 0]
    assert ((between == 10) | (between == 200)).mean() < 1.0  # a soft edge, not a hard cut
    assert between.min() >= 10 and between.max() <= 200


def test_mask_follows_an_open_mouth_down_and_is_whole_without_landmarks() -> None:
    size = 128
    face = load_template(size).astype(np.float64)
    opened = face.copy()
    opened[[55, 56, 57, 58, 59, 65, 66, 67], 1] += 12.0  # lower lip 12 px down
    closed_mask, open_mask = motion_mask(np.stack([face, opened]), size)
    chin_x, chin_y = np.round(face[57]).astype(int)
    below = min(size - 1, chin_y + 10)
    assert open_mask[below, chin_x] >= closed_mask[below, chin_x]
    assert open_mask.sum() > closed_mask.sum()
    missing = np.full((1, 68, 2), np.nan)
    assert (motion_mask(missing, size) == 1.0).all()  # no landmarks: keep the whole generated frame


def test_identical_generated_frame_is_returned_unchanged() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    face = load_template(64).astype(np.float64)
    out = paste_into_identity(frame, frame[0], np.stack([face, face]))
    np.testing.assert_array_equal(out[0], frame[0])


def _open_mouth_face(size: int) -> np.ndarray:
    face = load_template(size).astype(np.float64)
    face[[56, 57, 58, 65, 66, 67], 1] += size / 16  # lower lip down: an open mouth
    return face


def test_interior_keeps_generated_pixels_only_in_the_open_mouth_and_the_eyes() -> None:
    from talkface.generation.composite import interior_mask, paste_into_warp

    size = 128
    face = _open_mouth_face(size)
    generated = np.full((1, size, size, 3), 200, np.uint8)
    warped = np.full((1, size, size, 3), 10, np.uint8)
    out = paste_into_warp(generated, warped, face[None])
    inner = face[60:68].mean(0)  # centre of the open mouth
    for centre in (inner, face[36:42].mean(0), face[42:48].mean(0)):
        x, y = np.floor(centre).astype(int)
        assert (out[0, y, x] == 200).all()  # the texture stage's pixel, exactly
    # the nose tip, the cheeks beside the mouth, the chin below the lower lip and the corners: the warp's
    cheek = (face[4] + face[48]) / 2
    chin = (face[57] + face[8]) / 2
    for x, y in (face[30], cheek, chin, (0, 0), (size - 1, size - 1)):
        assert (out[0, int(y), int(x)] == 10).all()
    # smaller than the face-parts ellipses, which also take the lips, the skin round them and the chin
    assert interior_mask(face[None], size).sum() < 0.5 * motion_mask(face[None], size).sum()
    assert (interior_mask(np.full((1, 68, 2), np.nan), size) == 1.0).all()  # no landmarks: all generated


def test_an_untrained_warp_texture_stage_under_interior_is_the_warp_exactly() -> None:
    """The residual colour head starts at zero, so the stage returns its base (the warped identity): the
    composed frames must then be the warp baseline's frames bit for bit, and under face-parts the
    identity outside the mouth and eye ellipses."""
    import torch

    from talkface.generation.generator import Generator, render_frames
    from talkface.generation.warp import warp_frames
    from talkface.models.texture import TextureConfig, TextureGenerator

    size = 64
    config = TextureConfig(image_size=size, gen_widths=(8, 16, 16, 16, 16), gen_res_blocks=1, base="warp")
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    identity = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    points = load_template(size).astype(np.float64)
    targets = np.stack([points, _open_mouth_face(size)]).astype(np.float32)
    warped = np.stack(list(warp_frames(identity, points, targets)))
    for rule in ("interior", "face-parts"):
        gen = Generator(texture=TextureGenerator(config).eval(), texture_config=config, composite=rule)
        frames = np.stack(list(render_frames(gen, identity, targets, identity_px=points)))
        if rule == "interior":
            np.testing.assert_array_equal(frames, warped)
        else:
            np.testing.assert_array_equal(frames, paste_into_identity(warped, identity, targets))
