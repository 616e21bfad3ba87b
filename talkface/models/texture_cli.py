"""``talkface train texture`` and ``talkface generate`` (registered by talkface.models.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from talkface.models import train_options as fl
from talkface.utils.progress import console


def register(train_app: typer.Typer, app: typer.Typer) -> None:
    """Add ``texture`` to the ``train`` sub-app and ``generate`` to the root app."""
    train_app.command("texture")(train_texture)
    app.command("generate")(generate)


def train_texture(
    data: fl.DataOpt,
    split: fl.SplitOpt = "seen",
    out: fl.OutOpt = Path("runs/tex"),
    max_steps: fl.MaxStepsOpt = 20000,
    batch_size: fl.BatchSizeOpt = 16,
    devices: fl.DevicesOpt = "1",
    num_nodes: fl.NodesOpt = 1,
    accelerator: fl.AcceleratorOpt = "auto",
    precision: fl.PrecisionOpt = None,
    seed: fl.SeedOpt = 0,
    resume: fl.ResumeOpt = False,
    ckpt_every: fl.CkptEveryOpt = 1000,
    log_every: fl.LogEveryOpt = 25,
    val_every: fl.ValEveryOpt = 1000,
    num_workers: fl.WorkersOpt = 2,
    lr: fl.LrOpt = 2e-4,
    l1_weight: float = typer.Option(10.0, "--l1-weight", help="Weight of the L1 reconstruction loss "
                                                               "(the LSGAN term weighs 1)."),
    attention_weight: float = typer.Option(0.1, "--attention-weight", help="Weight of mean(A): keeps the "
                                           "attention map from copying nothing of the identity."),
    cache_mb: int = typer.Option(256, "--cache-mb", help="Decoded crop clips each DataLoader worker keeps "
                                                          "in memory (LRU), in MB."),
) -> None:
    """Texture: identity crop + landmark sketch -> frame, with an attention map and a colour map.

    The generator's output is A*C + (1-A)*identity (A: attention in [0,1], C: colour in [-1,1]),
    trained with an LSGAN PatchGAN discriminator on (frame, landmark sketch), L1 to the real frame and
    attention regularisers. Pairs come from the prepared crops (crops/<id>.mp4, decoded in DataLoader
    workers): the target frame's landmarks are drawn as a sketch, the identity frame is another frame
    of the same clip (>= 5 frames away). Validation writes L1 and SSIM (scikit-image, 7x7 window) on
    the split's validation clips to OUT/metrics.jsonl; TensorBoard shows real | generated | attention
    | colour grids. bf16 autocast and channels_last on GPU; `--devices 8` trains with DDP.

    Example: talkface train texture --data data/grid-prepared --split seen --out runs/tex --devices 8
    """
    import logging

    from talkface.models.texture import TextureConfig
    from talkface.models.texture_train import TextureStage

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = fl.settings_from_cli(**locals())
    config = TextureConfig(l1_weight=l1_weight, attention_mean_weight=attention_weight, lr=lr)
    stage = TextureStage(data, split, config, cache_bytes=cache_mb << 20)
    try:
        result = fl.run_training(stage, settings)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"texture: step {result.step}, validation {result.last_validation}, "
                  f"{result.samples_per_s:.1f} samples/s; checkpoint {settings.checkpoint_dir / 'last.pt'}")


def generate(
    checkpoints: Path = typer.Option(..., "--checkpoints", help="Folder holding the trained stages as "
                                     "`train` writes them (e.g. runs/ with runs/lm, runs/blink, runs/tex); "
                                     "each stage's newest */checkpoints/last.pt is used.", exists=True,
                                     file_okay=False),
    out: Path = typer.Option(..., "--out", help="With --audio: the mp4 to write. With --data: a folder "
                             "receiving one <clip_id>.mp4 per clip (ready for `talkface evaluate`)."),
    audio: Path | None = typer.Option(None, "--audio", help="Speech file (wav, mp3, or a video's audio "
                                      "track; any sample rate).", exists=True, dir_okay=False),
    identity: Path | None = typer.Option(None, "--identity", help="Image with exactly one face (png, "
                                         "jpg): whose face talks.", exists=True, dir_okay=False),
    data: Path | None = typer.Option(None, "--data", help="Prepared dataset: generate every clip of "
                                     "--split, each clip's first frame as identity and its audio as speech.",
                                     exists=True, file_okay=False),
    split: str = typer.Option("test", "--split", help="With --data: which part to generate "
                              "(train | val | test)."),
    protocol: str = typer.Option("seen", "--protocol", help="With --data: the split protocol whose "
                                 "train/val/test column to read (the dataset's own by default)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the blink generator (same seed, same blinks)."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when present) | cpu | cuda | cuda:1."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Frames per texture-generator batch "
                                          "(default 16 on CPU, 64 on GPU)."),
    deepspeech_model: Path | None = typer.Option(None, "--deepspeech-model", help="DeepSpeech v0.1.0 "
                                                 "output_graph.pb, when the landmark model was trained on "
                                                 "DeepSpeech features."),
) -> None:
    """Generate talking-face videos from speech with the trained stages.

    One video: talkface generate --audio speech.wav --identity face.png --checkpoints runs/ --out talking.mp4

    A test split: talkface generate --data data/grid-prepared --split test --checkpoints runs/ --out out/ours

    Pipeline: audio (read at 16 kHz) -> speech features (the landmark model's dataset backend) ->
    person-independent landmarks -> generated blinks -> retargeted to the identity -> landmark sketches
    -> texture generator -> 128x128 frames at 25 fps (ceil(duration x 25) frames) -> H.264 mp4 with
    the input audio as AAC. The split form skips videos that exist (rerun to resume), records failures
    in OUT/generation.json and goes on.
    """
    from talkface.models.generate import generate_from_files, generate_split, load_generator
    from talkface.preprocess.landmarks.base import NoFaceError
    from talkface.preprocess.media import MediaError

    single = audio is not None or identity is not None
    if single == (data is not None):
        raise typer.BadParameter("give either --audio and --identity (one video) or --data (a split)")
    if single and (audio is None or identity is None):
        raise typer.BadParameter("the one-video form needs both --audio and --identity")
    if split not in ("train", "val", "test"):
        raise typer.BadParameter(f"--split must be train, val or test, not {split!r}")
    try:
        gen = load_generator(checkpoints, device, str(deepspeech_model) if deepspeech_model else None,
                             batch_size)
        if single:
            record = generate_from_files(gen, audio, identity, out, seed)
            console.print(f"wrote {out}: {record['n_frames']} frames, {record['duration_s']:.2f} s")
        else:
            summary = generate_split(gen, data, split, out, seed, split=protocol)
            console.print(f"{out}: {len(summary['generated'])} generated, {len(summary['skipped_existing'])} "
                          f"already there, {len(summary['failed'])} failed (see {out / 'generation.json'})")
            for clip_id, error in summary["failed"].items():
                console.print(f"[yellow]{clip_id}[/yellow]: {error}")
    except (NoFaceError, MediaError, ValueError, FileNotFoundError, KeyError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if single:
        console.print(json.dumps({k: record[k] for k in ("seed", "fps", "frame_count_rule")}))
