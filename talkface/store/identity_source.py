"""Which image a method is given as the identity for a prepared clip: the identity protocol.

``other-clip`` (the default): a frame of **another** clip of the same speaker, so no method is scored
on the frame it was given. The other clip is the next usable clip of that speaker in clip-id order
(wrapping round), and its frame is chosen by the identity-frame rule
(:func:`talkface.core.face68.choose_identity_frame`: a closed, neutral mouth with the eyes open). A
speaker with one usable clip falls back to ``same-clip``, flagged ``identity_same_clip``.

``same-clip``: the clip's own frame chosen by the same rule (what talkface did before this protocol;
the identity frame is then also one of the scored frames).

Generation (``generate --data``, every baseline) and evaluation (the identity metrics' reference
image) both ask :func:`identity_source`, so they always agree on the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from talkface.core.face68 import IDENTITY_RULE, NoFaceError, choose_identity_frame

IDENTITY_FROM = ("other-clip", "same-clip")
DEFAULT_IDENTITY_FROM = "other-clip"
OTHER_CLIP_RULE = ("the next usable clip of the same speaker in clip-id order (wrapping round); the clip "
                   "itself when its speaker has no other usable clip (flagged identity_same_clip)")
#: What generation.json and the results' protocol block record for each choice.
IDENTITY_RULES = {
    "other-clip": f"{OTHER_CLIP_RULE}; frame: {IDENTITY_RULE}",
    "same-clip": f"the clip itself; frame: {IDENTITY_RULE}",
}


@dataclass(frozen=True)
class IdentitySource:
    """The identity image of one clip: frame ``frame`` of clip ``clip_id`` (its aligned crop)."""

    clip_id: str
    frame: int
    identity_from: str  # the protocol asked for
    flags: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"clip": self.clip_id, "frame": self.frame, "flags": list(self.flags)}


def check_identity_from(identity_from: str) -> str:
    if identity_from not in IDENTITY_FROM:
        raise ValueError(f"--identity-from {identity_from!r}: choose one of {', '.join(IDENTITY_FROM)}")
    return identity_from


def identity_clip(ds: Any, clip_id: str, identity_from: str = DEFAULT_IDENTITY_FROM
                  ) -> tuple[str, tuple[str, ...]]:
    """The clip the identity image of ``clip_id`` comes from, and its flags (``ds``: a
    :class:`talkface.store.dataset.Dataset`)."""
    check_identity_from(identity_from)
    if identity_from == "same-clip":
        return clip_id, ()
    speaker = ds.record(clip_id).speaker
    same_speaker = sorted(r.clip_id for r in ds.records(usable_only=True) if r.speaker == speaker)
    others = [c for c in same_speaker if c != clip_id]
    if not others:
        return clip_id, ("identity_same_clip",)
    later = [c for c in others if c > clip_id]
    return (later[0] if later else others[0]), ()


def identity_source(ds: Any, clip_id: str, identity_from: str = DEFAULT_IDENTITY_FROM) -> IdentitySource:
    """The identity image of ``clip_id`` under ``identity_from`` (``NoFaceError`` when the source clip
    has no frame with landmarks)."""
    source, flags = identity_clip(ds, clip_id, identity_from)
    landmarks = np.asarray(ds.load_clip(source)["landmarks_aligned"], np.float32)
    try:
        frame = choose_identity_frame(landmarks)
    except NoFaceError as exc:
        raise NoFaceError(f"{clip_id}: identity clip {source}: {exc}") from None
    return IdentitySource(source, frame, identity_from, flags)
