"""Parts of the texture stage on CPU: the landmark sketch, the instance norm as GroupNorm, model sizes.

    python benchmarks/bench_texture_parts.py --out benchmarks/results/

- Landmark image (``talkface.models.render.render_batch``, the default 3-colour sketch at 128 px): CPU
  ms per frame over the 75 frames of the first GRID s1 fixture clip (its dlib landmarks, fitted into
  the crop), the median of ``--repeats`` (min and max kept; benchmarks/timing.py).
- Instance norm: the texture generator (``TextureConfig()`` defaults) as it is, with
  ``nn.GroupNorm(C, C)``, against the same generator with each of those replaced by
  ``nn.InstanceNorm2d(C, affine=True)`` (the same normalisation; the weights copied, outputs compared):
  a training step's forward + backward at batch ``--batch``, a generation forward at batch 1, and the
  norm layers alone (forward + backward on the activation shapes they see in that training step), each
  the median of ``--repeats`` after a warm-up (the two interleaved), CPU and wall time, ``--threads``
  torch threads.
- Parameter counts of the generator and the discriminator at the defaults.

Writes DIR/texture_parts.json with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _ms(t: dict) -> dict:
    """A benchmarks/timing.py dict in ms: the median (``cpu_ms``, ``wall_ms``), min, max and the load."""
    out = {f"{clock}_ms{suffix}": round(1e3 * t[f"{prefix}{stat}_s"], 3)
           for clock, prefix in (("cpu", "cpu_"), ("wall", ""))
           for suffix, stat in (("", "median"), ("_min", "min"), ("_max", "max"))}
    return {**out, **{k: t[k] for k in ("load_before", "load_after", "others_cpu_share", "under_load")}}


def median_of(fn: Callable[[], object], repeats: int) -> dict:
    """One warm-up call, then the median of ``repeats`` calls (min and max kept), CPU and wall ms."""
    from timing import measure

    return _ms(measure(fn, repeats, warmup=1, digits=6))


def median_of_pair(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """The same for competitors, interleaved call by call so both see the same load."""
    from timing import interleaved

    return {k: _ms(t) for k, t in interleaved(fns, repeats, warmup=1, digits=6).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (>= 3): the median")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from timing import RULE, machine_facts
    from torch import nn

    from talkface import __version__
    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video
    from talkface.models.render import RenderSettings, render_batch
    from talkface.models.texture import TextureConfig, build_texture_models
    from talkface.utils.atomic import write_json
    from talkface.utils.fixtures import fixtures_dir

    clips = sorted((fixtures_dir() / "grid" / "s1").glob("*.mpg"))
    if not clips:
        print(f"skipped: GRID fixtures not found under {fixtures_dir()} (set TALKFACE_FIXTURES)")
        return 0
    torch.set_num_threads(args.threads)
    load_start = [round(v, 2) for v in os.getloadavg()]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()

    config = TextureConfig()
    size = config.image_size
    points = get_landmark_backend("dlib").track(iter(read_video(clips[0]))).points.astype(np.float64)
    lo, hi = np.nanmin(points, axis=(0, 1)), np.nanmax(points, axis=(0, 1))
    fitted = (points - lo) / (hi - lo).max() * (0.8 * size) + 0.1 * size  # the face inside the crop
    settings = RenderSettings(size=size)
    render = median_of(lambda: render_batch(fitted, settings), args.repeats)
    render["frames"] = len(fitted)
    render["cpu_ms_per_frame"] = round(render["cpu_ms"] / len(fitted), 4)

    torch.manual_seed(0)
    generator, discriminator = build_texture_models(config)
    with_instance = copy.deepcopy(generator)
    replaced = 0
    for module in list(with_instance.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.GroupNorm) and child.num_groups == child.num_channels:
                norm = nn.InstanceNorm2d(child.num_channels, affine=True, eps=child.eps)
                norm.weight.data.copy_(child.weight.data)
                norm.bias.data.copy_(child.bias.data)
                setattr(module, name, norm)
                replaced += 1
    identity = torch.rand(args.batch, config.image_channels, size, size) * 2 - 1
    sketch = torch.from_numpy(np.stack([render_batch(fitted[:1], settings)[0]] * args.batch)).float()
    sketch = sketch.permute(0, 3, 1, 2) / 127.5 - 1  # (N, 3, H, W) in [-1, 1], as the stage feeds it

    def frame(model: nn.Module, n: int) -> torch.Tensor:
        return model(identity[:n], sketch[:n]).frame

    outputs = {}
    timings: dict[str, dict] = {}
    models = {"groupnorm": generator, "instancenorm2d": with_instance}

    def step(model: nn.Module) -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        frame(model, args.batch).float().mean().backward()

    def generate_1(model: nn.Module) -> None:
        model.eval()
        with torch.inference_mode():
            frame(model, 1)

    for kind, fn in (("train_step", step), ("generate_1", generate_1)):
        pair = median_of_pair({label: (lambda m=m, fn=fn: fn(m)) for label, m in models.items()},
                              args.repeats)
        for label, t in pair.items():
            timings[f"{label}_{kind}"] = t
    for label, model in models.items():
        model.eval()
        with torch.inference_mode():
            outputs[label] = frame(model, 2).float()
        print(label, timings[f"{label}_train_step"], timings[f"{label}_generate_1"], flush=True)
    diff = float((outputs["groupnorm"] - outputs["instancenorm2d"]).abs().max())

    # the norm layers alone, on the activations they see in a training step (shapes recorded by hooks)
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
             for m in generator.modules() if isinstance(m, nn.GroupNorm)]
    generator.train()
    frame(generator, args.batch)
    for h in hooks:
        h.remove()
    acts = [torch.randn(shape, requires_grad=True) for shape in shapes]

    def layers(kind: str) -> Callable[[], None]:
        norms = [nn.GroupNorm(a.shape[1], a.shape[1]) if kind == "groupnorm"
                 else nn.InstanceNorm2d(a.shape[1], affine=True) for a in acts]

        def run() -> None:
            for norm, a in zip(norms, acts, strict=True):
                norm(a).sum().backward()
        return run

    for label, t in median_of_pair({k: layers(k) for k in ("groupnorm", "instancenorm2d")},
                                   args.repeats).items():
        timings[f"{label}_layers_alone"] = t
    print(timings["groupnorm_layers_alone"], timings["instancenorm2d_layers_alone"], flush=True)

    def ratio(kind: str, clock: str) -> float:
        return round(timings[f"instancenorm2d_{kind}"][clock] / timings[f"groupnorm_{kind}"][clock], 3)

    record = {
        "benchmark": "texture_parts",
        "talkface_version": __version__,
        "date": started,
        "machine": machine_facts(torch=torch.__version__),
        "threads": args.threads,
        "nice": os.nice(0),
        "load_average_before": load_start,
        "timing": f"median of {args.repeats} calls after one warm-up (min and max kept; the two norms "
                  "interleaved call by call), CPU and wall",
        "under_load": render["under_load"] or any(t["under_load"] for t in timings.values()),
        "under_load_rule": RULE,
        "image_size": size,
        "render": render,
        "norm": {"batch": args.batch, "layers_replaced": replaced, "max_abs_output_difference": diff,
                 **timings,
                 "groupnorm_speedup_train_step_cpu": ratio("train_step", "cpu_ms"),
                 "groupnorm_speedup_train_step_wall": ratio("train_step", "wall_ms"),
                 "groupnorm_speedup_generate_1_cpu": ratio("generate_1", "cpu_ms"),
                 "groupnorm_speedup_generate_1_wall": ratio("generate_1", "wall_ms"),
                 "groupnorm_speedup_layers_alone_cpu": ratio("layers_alone", "cpu_ms"),
                 "groupnorm_speedup_layers_alone_wall": ratio("layers_alone", "wall_ms")},
        "parameters": {"generator": sum(p.numel() for p in generator.parameters()),
                       "discriminator": sum(p.numel() for p in discriminator.parameters())},
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "texture_parts.json", record)
    print({k: record[k] for k in ("render", "parameters")}, {k: v for k, v in record["norm"].items()
                                                             if "speedup" in k or k == "layers_replaced"})
    print(f"wrote {args.out / 'texture_parts.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
