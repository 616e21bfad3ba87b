"""Export trained stages for shipping: only what generation loads, weights in half precision.

A training run's files hold optimiser states, RNG states and (texture) the discriminator and the raw
generator beside its weight average; generation reads none of those. :func:`export_stages` writes,
for each stage, a run folder in the checkpoints contract (``<out>/<lm|blink|tex>/checkpoints/last.pt``
and its ``checkpoint.json``, with the new file's SHA-256) holding the stage's config and the weights
generation uses: tensors of at least :data:`HALF_MIN_NUMEL` values in float16, smaller ones (biases,
norms, the mean face) in float32. ``model_index.json`` names each component, its file, step, SHA-256
and the source run, so a loader reads names before weights (as diffusers' ``model_index.json`` does).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from talkface.store import checkpoints as ck
from talkface.utils import atomic
from talkface.utils.provenance import provenance

#: Tensors with at least this many values are stored in float16.
HALF_MIN_NUMEL = 4096
#: The run folder each stage is written to (generation's default names).
FOLDERS = {"landmarks": "lm", "blinks": "blink", "texture": "tex"}
#: The weights generation loads from each stage's ``models`` (texture: the weight average if kept).
USED_MODELS = {"landmarks": ("landmarks",), "blinks": ("blinks",), "texture": ("generator_ema", "generator")}
INDEX_FILE = "model_index.json"


def _halve(weights: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() and v.numel() >= HALF_MIN_NUMEL
                else v) for k, v in weights.items()}


def export_stage(state: dict[str, Any], stage: str) -> dict[str, Any]:
    """The state generation needs of one stage's loaded checkpoint."""
    models = state["models"]
    key = next((k for k in USED_MODELS[stage] if k in models), None)
    if key is None:
        raise ck.CheckpointError(f"the {stage} checkpoint holds none of {USED_MODELS[stage]}")
    kept = {k: v for k, v in state.items() if k not in ("models", "optimizers", "rng", "loader", "sampler")}
    return {**kept, "models": {key: _halve(models[key])}, "exported": "weights for generation, float16"}


def export_stages(runs: str | os.PathLike, out: str | os.PathLike, about: dict[str, Any]) -> dict[str, Any]:
    """Export every stage under ``runs`` into ``out``; write and return ``model_index.json``
    (``about``: what made the runs: command, data, seed, budget, licence)."""
    import torch

    out = Path(out)
    components = {}
    found = {}
    for stage, folder in FOLDERS.items():
        run = found[stage] = ck.find_stage(runs, stage)
        loaded = run.load(map_location="cpu")
        state = export_stage(loaded.state, stage)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        target = out / folder / ck.CHECKPOINTS_DIR
        target.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(target / ck.LAST, data)
        sha = _sha256(data)
        meta = run.meta or ck.CheckpointMeta(stage=stage, step=loaded.step)
        ck.write_meta(target, ck.CheckpointMeta(
            stage=stage, step=loaded.step, config=meta.config, dataset=meta.dataset, seed=meta.seed,
            budget=meta.budget, settings=meta.settings, talkface_version=meta.talkface_version,
            files={ck.LAST: ck.FileEntry(step=loaded.step, sha256=sha, bytes=len(data))}))
        components[stage] = {"folder": folder, "file": f"{folder}/{ck.CHECKPOINTS_DIR}/{ck.LAST}",
                             "sha256": sha, "bytes": len(data), "step": loaded.step,
                             "source": {"path": str(loaded.path), "sha256": loaded.sha256},
                             "recipe": recipe(stage, state)}
    calibration = export_calibration(found["blinks"].out_dir, out / FOLDERS["blinks"], components)
    index = provenance(components=components, blink_calibration=calibration, **about)
    atomic.write_json(out / INDEX_FILE, index)
    return index


def recipe(stage: str, state: dict[str, Any]) -> dict[str, Any]:
    """What a reader of ``model_index.json`` needs to know of how a stage reads its input and what it
    outputs, without loading weights: the landmark stage's feature standardisation, voice augmentation
    and motion gain; the texture stage's base and the composite rule generation uses with it."""
    config = state.get("config") or {}
    if stage == "landmarks":
        from talkface.models.speech_to_landmarks import LandmarkConfig

        lm = LandmarkConfig.from_dict(config)
        gain = next(iter(state["models"].values())).get("motion_gain")  # absent before the gain existed
        return {"feature_norm": lm.feature_norm, "voice_warp": list(lm.voice_warp),
                "freq_masks": lm.freq_masks, "motion_gain": 1.0 if gain is None else round(float(gain), 4)}
    if stage == "texture":
        from talkface.generation.composite import default_composite
        from talkface.models.texture import TextureConfig

        tex = TextureConfig.from_dict(config)
        return {"base": tex.base, "colour_jitter": tex.colour_jitter,
                "composite": default_composite(tex.base)}
    return {}


def export_calibration(blink_run: Path, blink_out: Path, components: dict[str, Any]) -> dict[str, Any] | None:
    """Carry the blink run's calibration record to the export when it was measured with the exported
    weights' sources, re-keyed to the exported files (generation applies a record only to the weights it
    names); returns what ``model_index.json`` says of it (None: the run has none)."""
    from talkface.store import blink_calibration as record_file

    record = record_file.read_record(blink_run)
    if record is None:
        return None
    blinks, texture = components["blinks"], components["texture"]
    if not record_file.measured_with(record, blinks["source"]["sha256"], texture["source"]["sha256"]):
        return {"carried": False, "why": "measured with other weights than the exported ones"}
    carried = {**record, "blinks_sha256": blinks["sha256"], "texture_sha256": texture["sha256"],
               "measured_with": {"blinks_sha256": record.get("blinks_sha256"),
                                 "texture_sha256": record.get("texture_sha256"),
                                 "note": "measured with the full-precision weights the export was made from"}}
    path = record_file.write_calibration(blink_out, carried)
    return {"carried": True, "file": str(path.relative_to(blink_out.parent)),
            "applicable": record_file.applicable(record), "amplitude": record.get("amplitude")}


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
