"""Render every measured figure in README.md and docs/*.md from its results file (issue 19).

    python scripts/render_figures.py            # rewrite the figures in place
    python scripts/render_figures.py --check    # exit 1, naming each stale figure, when one differs

``make bench`` (benchmarks/run_all.py) runs it after the benchmarks, so a new result reaches the README
and the docs in the same step. Two kinds of marker, both HTML comments (invisible when rendered):

* A region, for tables and their provenance lines::

      <!-- figures:NAME begin: ... -->
      ...rendered text...
      <!-- figures:NAME end -->

  NAME is a key of ``REGIONS``. Everything between the markers is generated, the begin marker too (it
  names the region's source files): change the renderer below, not the text.

* An inline figure, for a number in prose or in a hand-written table cell::

      <!-- fig pipeline_quality.json:methods.pipeline.psnr.mean .2f -->27.70<!-- /fig -->

  ``FILE:PATH [FORMAT]``: FILE under benchmarks/results/; PATH dotted keys, where ``key[k=v,...]``
  picks the first element of a list whose fields match, a number indexes a list and ``length`` is a
  list's length; FORMAT a Python
  format spec, or ``ci`` + spec for a paired difference (``+0.090 [+0.019, +0.163]`` from ``diff``,
  ``diff_lo``, ``diff_hi``). Instead of ``FILE:PATH`` a name of ``DERIVED``: a figure computed from
  several numbers (a ratio, a verdict); or ``provenance:FILE``: the file's date, machine and load
  average as it records them (``provenance``).

A target's verdict ("met", "not met") is always computed from the file's number against the target
(``verdict``), never typed. The script reads only files; it imports nothing from talkface.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_REL = "benchmarks/results"

#: The targets the issues set (specifications, not measurements): the verdicts compare files' numbers
#: with these.
TARGETS = {
    "prepare_x_real_time_per_core": 6.0,
    "prepare_vs_naive": 2.0,
    "landmarks_mean_dev_px": 1.0,
    "prepare_peak_mib": 1024.0,
    "deepspeech_rtf": 20.0,
    "cpbd_speedup": 30.0,
    "ssim_psnr_speedup": 3.0,
    "generation_fps": 25.0,
    "evaluate_workers_speedup": 1.7,  # issue 22: evaluate with 2 workers against 1, 26 GRID s1 clips
    "evaluate_fps_2_workers": 150.0,  # issue 22: frames/s of that evaluate with 2 workers
}


# --------------------------------------------------------------------------------------------------
# Reading results


class Results:
    """The results files, read once each. ``data`` replaces files by name (tests fabricate them)."""

    def __init__(self, folder: Path = RESULTS, data: Mapping[str, object] | None = None, root: Path = ROOT):
        self.folder = Path(folder)
        self.root = Path(root)
        self._cache: dict[str, object] = dict(data or {})

    def _path(self, name: str) -> Path:
        return self.root / name if "/" in name else self.folder / name

    def json(self, name: str) -> dict:
        if name not in self._cache:
            self._cache[name] = json.loads(self._path(name).read_text(encoding="utf-8"))
        return self._cache[name]  # type: ignore[return-value]

    def text(self, name: str) -> str:
        if name not in self._cache:
            self._cache[name] = self._path(name).read_text(encoding="utf-8")
        return self._cache[name]  # type: ignore[return-value]


_SEGMENT = re.compile(r"([^.\[\]]+)(?:\[([^\]]*)\])?")


def lookup(data: object, path: str) -> object:
    """``a.b[k=v,k2=v2].c`` or ``a.0.b``: keys, list indices and list selection by field values;
    ``length`` after a list is its length."""
    value = data
    for part in re.split(r"\.(?![^\[]*\])", path):  # dots inside [...] belong to a selector
        m = _SEGMENT.fullmatch(part)
        if m is None:
            raise KeyError(f"bad path segment {part!r} in {path!r}")
        key, selector = m.group(1), m.group(2)
        if isinstance(value, list):
            value = len(value) if key == "length" else value[int(key)]
        elif isinstance(value, dict):
            if key not in value:
                raise KeyError(f"{path!r}: no key {key!r} (keys: {', '.join(map(str, value))})")
            value = value[key]
        else:
            raise KeyError(f"{path!r}: {key!r} looked up in a {type(value).__name__}")
        if selector is not None:
            wanted = dict(item.split("=", 1) for item in selector.split(","))
            matches = [x for x in value if all(str(x.get(k)) == v for k, v in wanted.items())]
            if not matches:
                raise KeyError(f"{path!r}: no element with {selector}")
            value = matches[0]
    return value


def ci(d: Mapping, spec: str = "+.3f") -> str:
    """A paired difference with its interval: ``+0.090 [+0.019, +0.163]``."""
    return f"{format(d['diff'], spec)} [{format(d['diff_lo'], spec)}, {format(d['diff_hi'], spec)}]"


def format_value(value: object, fmt: str = "") -> str:
    if fmt.startswith("ci"):
        return ci(value, fmt[2:] or "+.3f")  # type: ignore[arg-type]
    if fmt == "date":
        return str(value)[:10]
    return format(value, fmt) if fmt else str(value)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    """"met" or "not met": the file's number against the target, never typed by hand."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "not met"


def target_cell(target: float, value: float, unit: str = "x", higher_is_better: bool = True,
                digits: int = 2) -> str:
    """``3x: **not met** (2.88x)``"""
    return f"{target:g}{unit}: **{verdict(value, target, higher_is_better)}** ({value:.{digits}f}{unit})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Provenance: machine, date and load as each file records them


def _loads(v: object) -> str:
    """``0.80`` or, for the 1/5/15-minute triple, ``0.80/1.14/1.72``."""
    if isinstance(v, (int, float)):
        return f"{v:.2f}"
    return "/".join(f"{x:.2f}" for x in v)  # type: ignore[union-attr]


def _window(*values: object) -> str:
    triple = any(isinstance(v, (list, tuple)) and len(v) == 3 for v in values)
    return " (1/5/15 min)" if triple else " (1 min)"


def provenance(name: str, d: Mapping) -> str:
    """One line: the file, its date, machine and load average, as recorded (or "not recorded")."""
    date = d.get("date")
    if isinstance(date, str) and "T" in date:
        date = date[:16].replace("T", " ") + " UTC"
    machine = d.get("machine")
    if isinstance(machine, dict):
        cpu = machine.get("cpu") or machine.get("cpu_model")
        cores = machine.get("cores") or machine.get("cpus")
        mem = machine.get("memory") or (f"{machine['memory_gib']:g} GiB" if "memory_gib" in machine else None)
        parts = [p for p in (cpu, f"{cores} cores" if cores else None, mem) if p]
        if "gpu" in machine:
            parts.append(f"GPU: {machine['gpu'] or 'none'}")
        if machine.get("python"):
            parts.append(f"Python {machine['python']}")
        if machine.get("torch"):
            parts.append(f"torch {machine['torch']}")
        machine = ", ".join(parts)
    elif not machine:
        bits = [f"Python {d['python']}" if d.get("python") else None,
                f"torch {d['torch']}" if d.get("torch") else None]
        machine = ", ".join(b for b in bits if b) or None
    threads = d.get("threads") or d.get("cpu_threads")
    if threads:
        machine = f"{machine}, {threads} threads" if machine else f"{threads} threads"
    load = None
    pairs = [("load_average_before", "load_average_after"), ("load_average_at_start", "load_average_at_end"),
             ("load_start", "load_end"), ("load_average_before_after", None)]
    for before, after in pairs:
        if before == "load_average_before_after" and before in d:
            b, a = d[before]
            load = f"{_loads(b)} before, {_loads(a)} after{_window(b, a)}"
            break
        if before in d or after in d:
            bits = []
            if before in d:
                bits.append(f"{_loads(d[before])} at the start")
            if after in d:
                bits.append(f"{_loads(d[after])} at the end")
            load = ", ".join(bits) + _window(d.get(before), d.get(after))
            break
    nice = f"; nice {d['nice']}" if "nice" in d else ""
    return (f"`{name}`: {date or 'date not recorded in the file'}; {machine or 'machine not recorded'}; "
            f"load average {load or 'not recorded in the file'}{nice}{under_load_note(d)}")


def under_load(d: object) -> bool:
    """Whether a file (or one figure's dict in it) says it was measured under load: an ``under_load``
    key set true by benchmarks/timing.py's rule (other processes took more than a quarter of the CPU)."""
    return isinstance(d, Mapping) and d.get("under_load") is True


def under_load_note(d: Mapping, prefix: str = "; ") -> str:
    """``; **measured under load**`` where the file says so (nothing for files without the key)."""
    if not under_load(d):
        return ""
    share = d.get("others_cpu_share")
    known = isinstance(share, (int, float))
    detail = f": other processes took {100 * share:.0f}% of the CPU" if known else ""
    return f"{prefix}**measured under load**{detail}"


def sources_note(res: Results, names: Sequence[str]) -> str:
    return "\n".join(f"- {provenance(n, res.json(n))}" for n in names)


# --------------------------------------------------------------------------------------------------
# The README's speed table: one function per row, each from its file's dict


def _fps(source: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?) fps", source)
    return float(m.group(1)) if m else None


def prepare_rows(p: Mapping) -> list[list[str]]:
    t, n, r = p["talkface_1_worker"], p["naive_per_frame_loop"], p["ratio_vs_naive"]
    dev, two = p["tracker_vs_per_frame_px"], p["talkface_2_workers"]
    fps = _fps(p.get("source", ""))
    clip = f"{t['frames'] / t['clips'] / fps:g} s clip" if fps else "clip"
    x_target, naive_target = TARGETS["prepare_x_real_time_per_core"], TARGETS["prepare_vs_naive"]
    steady_x, whole_x = t["steady_x_real_time_per_core"], t["whole_run_x_real_time_per_core"]
    runs = len(t.get("runs", [])) or 1
    stat = "median" if str(t.get("statistic", "")).startswith("median") else "mean"
    first = [
        f"prepare GRID (decode, landmarks, smoothing, alignment, logmel, crops + audio, npz), {t['clips']} "
        f"s1 clips, 1 worker; each side's figure the {stat} of {runs} runs{under_load_note(p)}",
        f"{t['steady_cpu_s_per_clip']:.2f} CPU s per {clip} in steady state (**{steady_x:.1f}x real time per "
        f"core**); {t['whole_run_cpu_s_per_clip']:.2f} CPU s a clip over the whole run from process start "
        f"({whole_x:.1f}x: {t['one_time_cpu_s']:.1f} CPU s of it once per process, imports and model "
        f"loading); {t['wall_s']:.1f} s wall",
        f"naive per-frame dlib loop (HOG + 68 points every frame, landmarks only), same run: "
        f"{n['steady_cpu_s_per_clip']:.2f} CPU s a clip steady, {n['whole_run_cpu_s_per_clip']:.2f} whole "
        "run",
        f"{r['steady_state_cpu']:.1f}x steady state, {r['whole_run_cpu']:.1f}x whole run (CPU)",
        f"{x_target:g}x real time per core: steady state **{verdict(steady_x, x_target)}** "
        f"({steady_x:.2f}x), "
        f"whole run **{verdict(whole_x, x_target)}** ({whole_x:.2f}x); {naive_target:g}x the naive loop: "
        f"steady state **{verdict(r['steady_state_cpu'], naive_target)}**, whole run "
        f"**{verdict(r['whole_run_cpu'], naive_target)}**; tracker {dev['mean']:.2f} px from the naive "
        f"loop's points (mean; p95 {dev['p95']:.2f} px; {dev['clips']} clips)",
    ]
    two_runs = len(two.get("runs", []))
    second = [
        "prepare, 2 workers, same run" + (f" (median of {two_runs} runs)" if two_runs else ""),
        f"{two['clips_per_s']:.2f} clips/s ({two['wall_s']:.2f} s wall against {t['wall_s']:.2f} s with 1 "
        f"worker; {two['cpu_s_per_clip_all_processes']:.2f} CPU s a clip over all processes)",
        "",
        f"{t['wall_s'] / two['wall_s']:.2f}x one worker's throughput",
        f"each worker pays its {t['one_time_cpu_s']:.1f} CPU s start-up on about {t['clips'] / 2:g} clips, "
        f"and the two cores also run the parent's manifest and the encoder threads; the per-worker share "
        f"({two['throughput_per_worker_vs_1_worker']:.2f}) is a short-run figure, not a steady-state one",
    ]
    return [first, second]


def prepare_memory_row(p: Mapping) -> list[str]:
    by_len = p["peak_rss_mib_by_clip_length"]
    cells = ", ".join(f"{v:.0f} MiB for {k.removesuffix('s')} s" for k, v in by_len.items())
    peak = max(by_len.values())
    limit = TARGETS["prepare_peak_mib"]
    return ["prepare peak memory per worker, by clip length", cells + " (frames are bounded; the growth is "
            "the features computed over the whole track)", "", "",
            f"< 1 GiB: **{verdict(peak, limit, higher_is_better=False)}** (at most {peak:.0f} MiB)"]


def crop_encoding_row(p: Mapping) -> list[str]:
    c = p["crop_encoding"]
    presets = c["presets"]
    used = "ultrafast"

    def desc(name: str) -> str:
        q = presets[name]
        return f"{q['psnr_db']:.1f} dB, {q['kib_per_clip']:.0f} KiB, {q['encode_cpu_ms_per_clip']:.0f} ms"

    others = "; ".join(f"{name}: {desc(name)}" for name in presets if name != used)
    fastest = min(presets, key=lambda k: presets[k]["encode_cpu_ms_per_clip"])
    best = max(presets, key=lambda k: presets[k]["psnr_db"])
    if fastest == used and best == used:
        note = f"kept: {used}, the fastest preset, is also the most faithful at this CRF"
    else:
        note = f"{used} (prepare's preset): fastest here is {fastest}, most faithful {best}"
    q = presets[used]
    return [
        f"prepare crops: x264 preset at CRF {c['crf']}, {c['clips']} GRID clips",
        f"{used} (what prepare uses): {q['psnr_db']:.1f} dB PSNR of the decoded crop against the "
        "uncompressed "
        f"aligned crop, {q['kib_per_clip']:.0f} KiB, {q['encode_cpu_ms_per_clip']:.0f} CPU ms a clip",
        others, "", note,
    ]


def landmarks_row(lm: Mapping) -> list[str]:
    g, v = lm["grid_360x288"], lm["voxceleb_style_224x224"]
    gsize = "x".join(map(str, g["per_clip"][0]["size"])) if g.get("per_clip") else "360x288"
    vsize = "x".join(map(str, v["per_clip"][0]["size"])) if v.get("per_clip") else "224x224"
    limit = TARGETS["landmarks_mean_dev_px"]
    worst = max(g["mean_dev_px"], v["mean_dev_px"])
    return [
        f"landmarks: tracker vs per-frame detection, {g['clips']} GRID s1 clips at {gsize} ({g['frames']} "
        "frames), one thread, decoding excluded"
        + (f"; median of {g['repeats']} passes" if "repeats" in g else "") + under_load_note(lm),
        f"{g['tracked_ms_per_frame_cpu']:.2f} CPU ms/frame (detector on "
        f"{100 * g['detector_runs_fraction']:.1f}% "
        "of frames, the 68-point model batched in NumPy)",
        f"dlib's own HOG detector + `shape_predictor` on every frame, called directly: "
        f"{g['naive_ms_per_frame_cpu']:.1f} CPU ms/frame",
        f"{g['speedup_cpu']:.1f}x (CPU; {g['speedup_wall']:.1f}x wall); VoxCeleb-style {vsize} clips with "
        f"head motion: {v['tracked_ms_per_frame_cpu']:.1f} vs {v['naive_ms_per_frame_cpu']:.1f} ms, "
        f"{v['speedup_cpu']:.1f}x",
        f"within {limit:g} px mean: **{verdict(worst, limit, higher_is_better=False)}** "
        f"({g['mean_dev_px']:.2f} px "
        f"mean, {g['p95_dev_px']:.2f} px p95; VoxCeleb-style {v['mean_dev_px']:.2f} px mean)",
    ]


def deepspeech_row(ds: Mapping) -> list[str]:
    rtf, roof = ds["rtf"], ds["roofline"]
    target = ds.get("target_rtf", TARGETS["deepspeech_rtf"])
    clip_s = ds.get("clip_seconds", ds["audio_seconds"] / ds["batched_clips"])
    return [
        f"DeepSpeech v0.1.0 features, {ds['variant'].split(', ', 1)[-1]}, "
        f"{ds['threads']} threads{under_load_note(ds)}",
        f"{rtf['talkface_batched']:.1f}x real time batched ({ds['batched_clips']} x {clip_s:g} s clips, "
        f"batch {ds['batch_size']}), "
        f"{rtf['talkface_unbatched']:.1f}x unbatched (one {ds['audio_seconds']:g} s clip)",
        f"NumPy float32 forward (TensorFlow 1.x does not install): {rtf['numpy_reference']:.1f}x",
        f"{ds['ratio_vs_reference']['batched']:.2f}x batched",
        f"{target_cell(target, rtf['talkface_batched'], digits=1)}; the run's own roofline "
        f"({roof['gemm_gflops']:.0f} GFLOP/s GEMM, {roof['matvec_gb_per_s']:.0f} GB/s) caps this CPU at "
        f"{roof['rtf_bound_batched']:.1f}x batched, {roof['rtf_bound_unbatched']:.1f}x unbatched"
        + (" (the unbatched run exceeds its bound: the bound's mat-vec bandwidth, measured on one stream, "
           "underestimates what the recurrence gets, so that bound is not one)"
           if rtf["talkface_unbatched"] > roof["rtf_bound_unbatched"] else "")
        + (f"; {share_target:.0%} of it batched: **{verdict(share, share_target)}** ({share:.0%})"
           if (share := (ds.get("share_of_roofline") or {}).get("batched")) is not None
           and (share_target := ds.get("target_share_of_roofline_batched")) else ""),
    ]


def cpbd_row(m: Mapping) -> list[str]:
    c = m["cpbd"]
    ours, pkg = c["matlab"], c["cpbd_package"]
    target = TARGETS["cpbd_speedup"]
    wall, cpu = ours["speedup_vs_package"], ours["cpu_speedup_vs_package"]
    return [
        f"CPBD (`matlab` variant), {c['size']} gray frame ({c['frames']} "
        + (f"GRID face crops; median of {c['repeats']} repeats)" if "repeats" in c
           else f"frames, fastest of {c['rounds']} rounds)"),
        f"{ours['ms_per_frame']:.1f} ms ({ours['cpu_ms_per_frame']:.1f} CPU ms)",
        f"`cpbd` 1.0.7: {pkg['ms_per_frame']:.0f} ms ({pkg['cpu_ms_per_frame']:.0f} CPU ms)",
        f"{wall:.1f}x wall, {cpu:.1f}x CPU",
        f"{target:g}x: **{verdict(wall, target)}** in wall time, **{verdict(cpu, target)}** in CPU time",
    ]


def ssim_psnr_row(m: Mapping) -> list[str]:
    s = m["ssim_psnr"]
    return [
        f"SSIM (Gaussian 11) + PSNR, {s['size']}, batched ({s['frames']}-frame clip)",
        f"{s['talkface_ms_per_frame']:.2f} ms/frame",
        f"scikit-image: {s['skimage_ms_per_frame']:.1f} ms/frame",
        f"{s['speedup']:.2f}x",
        target_cell(TARGETS["ssim_psnr_speedup"], s["speedup"]),
    ]


def evaluate_row(m: Mapping, ev: Mapping | None = None) -> list[str]:
    """`talkface evaluate`, 1 worker against 2: issue 22's figure from evaluate.json (``workers``) when the
    file has it, with its two targets; otherwise the older figure of metrics.json."""
    if ev is not None and "workers" in ev:
        return evaluate_workers_row(ev)
    e = m["evaluate"]
    return [
        f"`talkface evaluate` ({', '.join(e['metrics'])}; dlib landmarks on both sides), {e['clips']} clips, "
        f"{e['workers1']['frames']} frames",
        f"{e['workers1']['frames_per_s']:.1f} frames/s with 1 worker, {e['workers2']['frames_per_s']:.1f} "
        "with 2",
        "",
        f"{e['speedup_2_vs_1_workers']:.2f}x (2 workers against 1)",
        "",
    ]


def evaluate_workers_row(ev: Mapping) -> list[str]:
    """Issue 22: evaluate on the GRID s1 clips with 1 and 2 workers, medians of fresh processes."""
    w = ev["workers"]
    one, two = w["workers1"], w["workers2"]
    speedup, fps = w["speedup_2_vs_1_workers"], two["frames_per_s_median"]
    t_speed = w.get("target_speedup", TARGETS["evaluate_workers_speedup"])
    t_fps = w.get("target_frames_per_s_2_workers", TARGETS["evaluate_fps_2_workers"])
    return [
        f"`talkface evaluate` ({', '.join(w['metrics'])}; dlib landmarks on both sides, no cache), "
        f"{w['clips']} prepared GRID s1 clips, {w['frames']} frames; each figure the median of "
        f"{w['repeats']} fresh processes, start-up included{under_load_note(w)}",
        f"{one['frames_per_s_median']:.1f} frames/s with 1 worker ({one['frames_per_s_min']:.1f}-"
        f"{one['frames_per_s_max']:.1f}), **{fps:.1f} with 2** ({two['frames_per_s_min']:.1f}-"
        f"{two['frames_per_s_max']:.1f})",
        "",
        f"{speedup:.2f}x (2 workers against 1; {w['speedup_min']:.2f}-{w['speedup_max']:.2f})",
        f"{target_cell(t_speed, speedup)}; {t_fps:g} frames/s with 2 workers: **{verdict(fps, t_fps)}** "
        f"({fps:.1f})",
    ]


def _wall(d: Mapping) -> float:
    """A case's wall seconds: the median (new files) or the fastest run (older files)."""
    return d["wall_s_median"] if "wall_s_median" in d else d["wall_s_best"]


def _cpu(d: Mapping) -> float:
    return d["cpu_s_median"] if "cpu_s_median" in d else d["cpu_s_of_best"]


def evaluate_cache_row(ev: Mapping) -> list[str]:
    c1, c2 = ev["second_method_cache_1_worker"], ev["second_method_cache_2_workers"]
    n1, n2 = ev["second_method_no_cache_1_worker"], ev["second_method_no_cache_2_workers"]
    ref, ratios = ev["reference_landmarks_step_alone"], ev["ratios"]
    equal = ev["cached_rows_equal_uncached"]
    saved = 100 * (1 - _wall(c1) / _wall(n1))
    how = (f"median of {ev['repeats']} fresh processes" if "wall_s_median" in c1
           else f"fastest of {ev['repeats']} fresh processes")
    load = under_load_note({"under_load": ev.get("cache_under_load")})
    return [
        f"`evaluate`, a second method on the same references (cached reference landmarks), {ev['clips']} "
        f"clips ({', '.join(ev['metrics'])}); {how}{load}",
        f"{_wall(c1):.2f} s wall, {_cpu(c1):.2f} CPU s with 1 worker; "
        f"{_wall(c2):.2f} s wall with 2 workers; reference landmarks read in "
        f"{ref['cache_read_ms_per_clip_wall']:.0f} ms a clip",
        f"the same run without the cache: {_wall(n1):.2f} s (1 worker), {_wall(n2):.2f} s "
        f"(2 workers); reference tracking alone {ref['track_ms_per_clip_cpu']:.0f} CPU ms a clip",
        f"{ratios['cache_speedup_1_worker_wall']:.2f}x (1 worker), "
        f"{ratios['cache_speedup_2_workers_wall']:.2f}x "
        "(2 workers)",
        f"skip reference landmarks: **{'met' if equal else 'not met'}** (cached rows "
        f"{'equal' if equal else 'differ from'} uncached ones); the cache saves {saved:.0f}% of a 1-worker "
        "evaluation",
    ]


def train_landmarks_row(t: Mapping) -> list[str]:
    c = t["cpu"]
    runs = len(c.get("talkface_fabric_runs", []))
    return [
        f"landmark stage training, CPU, batch {t['batch_size']}, {t['threads']} threads"
        + (f"; median of {runs} runs of each loop, alternating" if runs else "") + under_load_note(t),
        f"{c['talkface_fabric_samples_per_s']:.1f} samples/s",
        f"the same model in a bare PyTorch loop: {c['plain_torch_samples_per_s']:.1f}",
        f"{c['ratio_talkface_over_plain']:.2f}x",
        "",
    ]


def texture_rows(tg: Mapping) -> list[list[str]]:
    r = tg["results"]["cpu"]
    size = tg["image_size"]
    target = TARGETS["generation_fps"]
    median = r["fps_after_features_median"]
    if "fps_after_features_best" in r:  # median-based files (benchmarks/timing.py)
        h264 = r["fps_after_features_with_h264_median"]
        generation = (f"{median:.0f} fps median ({r['fps_after_features_worst']:.0f}-"
                      f"{r['fps_after_features_best']:.0f}; {h264:.0f} fps median with H.264 + AAC)")
    else:
        generation = (f"{r['fps_after_features']:.0f} fps best, {median:.0f} fps median "
                      f"({r['fps_after_features_with_h264']:.0f} fps best with H.264 + AAC)")
    return [
        [f"texture stage training, {size} px, CPU, batch {r['train_batch']}{under_load_note(tg)}",
         f"{r['texture_train_samples_per_s']:.1f} samples/s",
         f"pix2pix U-Net-128 + PatchGAN: {r['pix2pix_train_samples_per_s']:.1f}",
         f"{r['ratio_train_vs_pix2pix']:.1f}x", ""],
        [f"generation after features, {size} px, CPU",
         generation,
         f"pix2pix U-Net-128 generator alone: {r['pix2pix_unet128_fps']:.0f} fps",
         f"{r['ratio_fps_vs_pix2pix']:.1f}x",
         f"{target:g} fps: **{verdict(median, target)}** (median {median:.0f} fps)"],
    ]


SPEED_SOURCES = ("prepare.json", "landmarks.json", "deepspeech.json", "metrics.json", "evaluate.json",
                 "train_landmarks.json", "texture_generate.json")


def render_speed(res: Results) -> str:
    p, m = res.json("prepare.json"), res.json("metrics.json")
    ev = res.json("evaluate.json")
    rows = [*prepare_rows(p), landmarks_row(res.json("landmarks.json")), prepare_memory_row(p),
            crop_encoding_row(p), deepspeech_row(res.json("deepspeech.json")), cpbd_row(m), ssim_psnr_row(m),
            evaluate_row(m, ev)]
    if "second_method_cache_1_worker" in ev:  # left out by bench_evaluate.py --skip-cache
        rows.append(evaluate_cache_row(ev))
    rows += [train_landmarks_row(res.json("train_landmarks.json")),
             *texture_rows(res.json("texture_generate.json"))]
    body = table(["what", "talkface", "the usual tool, same run", "ratio", "target"], rows)
    return (body + "\n\nMachine, date and load of each file, as the file records them (`" + RESULTS_REL
            + "/`):\n\n" + sources_note(res, SPEED_SOURCES))


# --------------------------------------------------------------------------------------------------
# The comparison on GRID s1 (bench_pipeline_quality.py)


def leaderboard_table(md: str) -> str:
    """The first markdown table of a leaderboard file, as it is."""
    lines, started = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            lines.append(line)
            started = True
        elif started:
            break
    if not lines:
        raise ValueError("no table in the leaderboard file")
    return "\n".join(lines)


STAGE_ORDER = ["landmarks", "blinks", "texture"]


def pipeline_run(pq: Mapping) -> str:
    """The run's provenance: machine, date, load, split, training reached, calibration, timings."""
    tr = pq["training"]
    stages = tr["stages"]
    minutes = sum(s["train_seconds"] for s in stages.values()) / 60
    order = sorted(stages, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else len(STAGE_ORDER))
    reached = ", ".join(f"{name} {stages[name]['step']} steps ({stages[name]['train_seconds'] / 60:.1f} min, "
                        f"stopped by {stages[name]['stopped_by']})" for name in order)
    budget = f"budget {pq['budget']}" if pq.get("budget") else f"steps {pq.get('steps')}"
    cal = pq["generation"]["provenance"].get("blink_amplitude", {}).get("calibration")
    cal_text = ""
    if cal and cal.get("applied"):
        rate = cal["generated_blinks_per_min"][f"{cal['amplitude']:g}"]
        cal_text = (f"; blink amplitude calibrated through the texture stage: x{cal['amplitude']:g} "
                    f"({rate:.1f} blinks/min in generated frames against {cal['real_blinks_per_min']:.1f} "
                    "in the real crops of training clips)")
    gen_s = sum(pq["generation"]["seconds"].values())
    machine = pq["machine"]
    return (f"Run: `{pq['command'].split(' --data')[0]}`, {pq['date'][:16].replace('T', ' ')} UTC; "
            f"{machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory']}, GPU: "
            f"{machine['gpu'] or 'none'}, "
            f"torch {machine['torch']} ({machine['torch_threads']} threads); load average (1/5/15 min) "
            f"{_loads(pq['load_start'])} at the start, {_loads(pq['load_end'])} at the end. Data: "
            f"{pq['split']}. "
            f"Training ({budget}, seed {pq['seed']}): {reached}; {minutes:.1f} min of training{cal_text}. "
            f"Generation of the {len(pq['generation']['seconds'])} methods {gen_s:.0f} s, evaluation "
            f"{pq['evaluate_s']:.0f} s.")


def render_grid_leaderboard(res: Results) -> str:
    pq = res.json("pipeline_quality.json")
    n = pq["methods"]["pipeline"]["psnr"]["n"]
    return (leaderboard_table(res.text("pipeline_quality.leaderboard.md")) + "\n\n"
            f"(mean ± half the 95% bootstrap interval over the {n} held-out clips; bold best, italics "
            "second; ≈ no "
            "winner; ‡ the codec's floor, not ranked; every column's variant and resolution are footnoted in "
            f"`{RESULTS_REL}/pipeline_quality.leaderboard.md`.)\n\n" + pipeline_run(pq))


_DIGITS = {"psnr": ".2f", "ssim": ".3f", "lmd_mouth": ".3f", "lmd_face": ".3f", "blink_rate": ".1f",
           "blink_duration": ".3f"}
_UNITS = {"psnr": " dB", "lmd_mouth": " px", "lmd_face": " px", "blink_rate": " /min", "blink_duration": " s"}


def target_rows(targets: Sequence[Mapping]) -> list[list[str]]:
    rows = []
    for t in targets:
        spec, unit = _DIGITS.get(t["metric"], ".3f"), _UNITS.get(t["metric"], "")
        measured = f"{format(t['mean_a'], spec)} vs {format(t['mean_b'], spec)}{unit}"
        if "diff" in t:
            measured += f", {ci(t, '+' + spec)}"
        if "ratio" in t:
            measured += f" (ratio {t['ratio']:.2f})"
        holds = {True: "yes", False: "**no**", None: "-"}[t.get("holds")]
        rows.append([t["target"], f"{t['a']} vs {t['b']}", str(t.get("n_clips", "")), measured, holds])
    return rows


def render_pipeline_targets(res: Results) -> str:
    pq = res.json("pipeline_quality.json")
    body = table(["target (paired over clips, 95% bootstrap interval of the mean difference a - b)", "a vs b",
                  "clips", "measured: a vs b, a - b [95%]", "holds"], target_rows(pq["targets"]))
    return body + f"\n\n(`{RESULTS_REL}/pipeline_quality.json`, `targets`; the run is described above.)"


def render_pipeline_run(res: Results) -> str:
    return pipeline_run(res.json("pipeline_quality.json"))


_UNSEEN_COLUMNS = (("lmd_mouth", "LMD mouth (px) ↓", ".3f"), ("psnr", "PSNR (dB) ↑", ".2f"),
                   ("ssim", "SSIM ↑", ".3f"), ("identity_dlib", "identity dist. ↓", ".3f"),
                   ("blink_rate", "blinks /min", ".1f"))


def render_unseen_identities(res: Results) -> str:
    """Seen and unseen speakers side by side: every method's means, the issue's targets per part."""
    u = res.json("unseen_identities.json")
    out = []
    for part, label in (("test", f"speaker never trained on ({u['test_speakers']})"),
                        ("val", f"trained speaker ({u['train_speakers']}), held-out clips")):
        if part not in u["methods"]:
            continue
        methods = u["methods"][part]
        n = max((m.get("psnr", {}).get("n", 0) for m in methods.values()), default=0)
        rows = [[name] + [format(ms[m]["mean"], spec) if ms.get(m, {}).get("n") else "n/a"
                          for m, _, spec in _UNSEEN_COLUMNS] for name, ms in methods.items()]
        out += [f"**{label}**, {n} clips (mean over clips):", "",
                table(["method", *(h for _, h, _ in _UNSEEN_COLUMNS)], rows), "",
                table(["target (pipeline vs baseline, paired over clips, 95% bootstrap)", "a vs b", "clips",
                       "measured: a vs b, a - b [95%]", "holds"], target_rows(u["targets"][part])), ""]
        out += _unseen_reference_notes(u, part)
    stages = u["training"]["stages"]
    reached = ", ".join(f"{k} {v['step']} steps" for k, v in stages.items())
    steps = u.get("steps") or "the recipe defaults"
    schedule = f"budget {u['budget']}" if u.get("budget") else f"steps {steps}"
    m = u["machine"]
    reused = (" by an earlier run of the benchmark, whose stages this one generated and scored again "
              "(`--skip-training`)" if u["training"].get("reused") else "")
    composite = _composite_name(u)
    out.append(f"Measured {str(u['date'])[:10]} on {m['cpus']} CPUs ({m['cpu_model']}), load "
               f"{u['load_start']} at start; trained on {u['train_speakers']}{reused} ({schedule}, seed "
               f"{u['seed']}; reached: {reached}); `pipeline` composed by `{composite}`; "
               f"identity image: another clip of the same speaker; {u['split']}. "
               f"`{RESULTS_REL}/unseen_identities.md` has every interval.")
    return "\n".join(out)


#: the earlier, shortened run of bench_unseen_identities.py (old landmark recipe, 400 texture steps), kept
#: to show what the longer texture and blink training of the 45-minute recipe does on a face never seen
UNSEEN_SHORT_RUN = "unseen_identities.2026-12-07T0708.json"
#: the 45-minute stages' run before retargeting scaled the mouth (the same stages, videos and scoring), kept
#: for the methods that retargeting drives
UNSEEN_BEFORE_MOUTH_SCALE = "unseen_identities.2026-12-07T1931.json"
_UNSEEN_RUN_METHODS = ("pipeline", "pipeline-face-parts", "oracle-landmarks", "warp", "static-frame")
#: (file, methods shown from it), oldest first
UNSEEN_RUNS = (
    (UNSEEN_SHORT_RUN, _UNSEEN_RUN_METHODS),
    (UNSEEN_BEFORE_MOUTH_SCALE, ("pipeline", "warp")),
    ("unseen_identities.json", _UNSEEN_RUN_METHODS),
)


def _retarget_name(u: Mapping) -> str:
    """How a run's retargeting scaled the motion: recorded since the mouth scale exists."""
    return "mouth-scaled" if u["generation"]["provenance"].get("retarget_mouth_scale") else "face similarity"


def render_unseen_runs(res: Results) -> str:
    """Runs of the unseen-identity benchmark side by side: what each stage's training reached, how the
    landmarks were retargeted, and what the pipeline, the texture stage on the real landmarks
    (oracle-landmarks) and the warp on the stages' landmarks (warp) score on each part."""
    runs = [(name, res.json(name), methods) for name, methods in UNSEEN_RUNS]
    rows = []
    for part, label in (("test", "never trained on"), ("val", "trained speaker, held out")):
        for method in _UNSEEN_RUN_METHODS:
            for _, u, shown in runs:
                if method not in shown or method not in u["methods"][part]:
                    continue
                ms = u["methods"][part][method]
                st = u["training"]["stages"]
                recipe = (f"{'45 min' if u.get('budget') else 'steps'}: lm {st['landmarks']['step']}, "
                          f"blink {st['blinks']['step']}, tex {st['texture']['step']}")
                if method == "pipeline":  # composite rule: recorded since "interior" exists
                    recipe += f"; composite {_composite_name(u)}"
                if method in ("pipeline", "pipeline-face-parts", "warp"):
                    recipe += f"; retarget {_retarget_name(u)}"
                    if u["generation"]["provenance"].get("blink_hold"):
                        recipe += "; blinks held"
                speaker = u["test_speakers" if part == "test" else "train_speakers"]
                rows.append([f"{speaker} ({label})", method, recipe]
                            + [format(ms[m]["mean"], spec) if ms.get(m, {}).get("n") else "n/a"
                               for m, _, spec in _UNSEEN_COLUMNS])
    sources = ", ".join(f"`{RESULTS_REL}/{n}` ({str(u['date'])[:16]} UTC, landmark stage: "
                        f"{_landmark_recipe(u)})" for n, u, _ in runs)
    return (table(["speaker", "method", "run (steps reached)", *(h for _, h, _ in _UNSEEN_COLUMNS)], rows)
            + f"\n\nSource: {sources}; same data, protocol, seed and identity images.")


#: the unseen-identity runs that tell what holding the generated blinks did: before the hold, held with the
#: amplitude the calibration chose by the closest rate, held with the amplitude its present rule chooses
BLINK_HOLD_RUNS = (("unseen_identities.2026-12-07T2040.json", "no hold"),
                   ("unseen_identities.2026-12-07T2123.json", "held, amplitude by the closest rate"),
                   ("unseen_identities.json", "held, amplitude by the present rule"))


def render_blink_hold(res: Results) -> str:
    """The pipeline's blinks and pixels with and without the blink hold, on both parts, from the same
    stages (each run's calibrated amplitude with it)."""
    rows = []
    for part, label in (("test", "never trained on"), ("val", "trained speaker, held out")):
        for name, what in BLINK_HOLD_RUNS:
            u = res.json(name)
            ms, real = u["methods"][part]["pipeline"], u["methods"][part]["ground-truth"]
            amp = u["generation"]["provenance"]["blink_amplitude"].get("calibration", {}).get("amplitude")
            speaker = u["test_speakers" if part == "test" else "train_speakers"]
            rows.append([f"{speaker} ({label})", what, "n/a" if amp is None else f"x{amp:g}",
                         f"{ms['blink_rate']['mean']:.1f} ({real['blink_rate']['mean']:.1f})",
                         f"{ms['blink_duration']['mean']:.3f} ({real['blink_duration']['mean']:.3f})",
                         f"{ms['psnr']['mean']:.2f}", f"{ms['ssim']['mean']:.3f}",
                         f"{ms['identity_dlib']['mean']:.3f}"])
    sources = ", ".join(f"`{RESULTS_REL}/{n}`" for n, _ in BLINK_HOLD_RUNS)
    return (table(["speaker", "blinks", "amplitude", "blinks /min (real)", "blink duration s (real)",
                   "PSNR (dB) ↑", "SSIM ↑", "identity dist. ↓"], rows)
            + f"\n\nSource: {sources}; the pipeline row of each, the same 45-minute stages, data, seed and "
            "identity images.")


def _composite_name(u: Mapping) -> str:
    """The composite rule of a run's pipeline: its name, recorded since rules have names; runs before
    recorded the face-parts rule's text."""
    recorded = u["generation"]["provenance"].get("composite")
    return recorded if recorded in ("interior", "face-parts") else "face-parts"


def _landmark_recipe(u: Mapping) -> str:
    lm = u["generation"]["provenance"]["checkpoints"]["landmarks"]
    if "motion_gain" not in lm:
        return "features standardised per dataset, no voice augmentation, no motion gain"
    return (f"features standardised per {lm['feature_norm']}, voice augmentation, motion gain "
            f"{lm['motion_gain']:g}")


def _unseen_reference_notes(u: Mapping, part: str) -> list[str]:
    """What the real clips score on the identity and blink-rate targets of ``part``: where the real
    video itself fails a target, the target measures something no method can reach."""
    methods = u["methods"][part]
    real, still, ours = (methods.get(k, {}) for k in ("ground-truth", "static-frame", "pipeline"))
    notes = []
    if all("identity_dlib" in m for m in (real, still, ours)):
        gt, st, pl = (m["identity_dlib"]["mean"] for m in (real, still, ours))
        worst = max(v for v in u["per_clip"][part]["pipeline"]["identity_dlib"].values() if v == v)
        holds = "holds" if pl <= gt + 0.05 and worst <= 0.3 else "does not hold"
        notes.append(f"Identity target, checked on the real clips: the real video is {gt:.3f} from the "
                     f"identity image against the still frame's {st:.3f}, so it fails the target "
                     f"(still frame + 0.05 = {st + 0.05:.3f}) as well: the still frame *is* the identity "
                     "image (re-encoded), and any face that moves drifts from it. Measured against the "
                     f"real clip's own distance + 0.05 ({gt + 0.05:.3f}), the pipeline's {pl:.3f} (worst "
                     f"clip {worst:.3f}) {holds}.")
    train = u["methods"].get("val", {}).get("ground-truth", {}).get("blink_rate")
    if part == "test" and train and "blink_rate" in real and "blink_rate" in ours:
        real_rate, our_rate = real["blink_rate"]["mean"], ours["blink_rate"]["mean"]
        notes.append(f"Blink rate: the real {u['test_speakers']} clips blink {real_rate:.1f} "
                     f"times a minute, the trained speaker's held-out clips {train['mean']:.1f}; the blink "
                     f"stage, trained on {u['train_speakers']} alone, generates {our_rate:.1f}. "
                     "A person's blink rate is not in one image and their speech, so this target asks the "
                     "model for what it has never been shown.")
    return [f"{n}\n" for n in notes]


def _stage_vs_still(v: Mapping) -> list[str]:
    """The two cells of one part of an unheard-voices run: mouth LMD of the stage against the still mouth,
    and their ratio with the paired difference and its interval."""
    return [f"{v['lmd_mouth']['mean']:.3f} vs {v['lmd_mouth_still']['mean']:.3f}",
            f"**{v['ratio_to_still']:.2f}** ({v['diff_to_still']:+.3f} [{v['diff_lo']:+.3f}, "
            f"{v['diff_hi']:+.3f}])"]


def render_unheard_voices(res: Results) -> str:
    """The landmark stage on a voice heard and one never heard, per recipe."""
    uv = res.json("unheard_voices.json")
    rows = []
    # each recipe at gain 1 and then at its fitted gain, in the order the recipes add up (the file's keys
    # are sorted)
    order = ["dataset", "utterance", "utterance+gain", "utterance+augment", "utterance+augment+gain"]
    names = sorted(uv["runs"], key=lambda n: (order.index(n) if n in order else len(order), n))
    for name in names:
        run = uv["runs"][name]
        gain = f"{run['motion_gain']:.2f}" + (" (fitted)" if name.endswith("+gain") else "")
        for part, label in (("val", "s1 held out (voice heard)"), ("test", "s4 (voice never heard)")):
            v = run["parts"][part]
            rows.append([run["recipe"], gain, label, str(v["clips"]), *_stage_vs_still(v),
                         f"{v['opening_corr']['mean']:.2f}",
                         f"{v['opening_std_pred']['mean']:.3f} / {v['opening_std_real']['mean']:.3f}"])
    m = uv["machine"]
    return (table(["recipe", "motion gain", "clips of", "n", "mouth LMD: stage vs still mouth (px)",
                   "ratio (difference [95%])", "opening correlation", "opening std: stage / real"], rows)
            + f"\n\nSource: `{RESULTS_REL}/unheard_voices.json` ({str(uv['date'])[:10]}, {m['cpus']} CPUs, "
            f"{m['cpu_model']}; load {uv['load_start']} at start): {uv['what']}; {uv['protocol']}; "
            f"{uv['steps']} landmark-stage steps per recipe, seed {uv['seed']}, {uv['feature_backend']}. "
            "The fitted gain is fitted on the s1 held-out clips it is scored on (one number); s4 plays no "
            "part in any fit.")


#: the stage's default recipe at the gain it fitted (what generation uses)
VOICE_TRANSFER_RUN = "utterance+augment+gain"


def render_voice_transfer(res: Results) -> str:
    """The landmark stage's default recipe trained on each voice, scored on that voice's held-out clips and
    on the other voice (unheard_voices.json and its --reverse twin)."""
    rows, sources = [], []
    for name in ("unheard_voices.json", "unheard_voices.reverse.json"):
        uv = res.json(name)
        speakers = uv["speakers"]
        run = uv["runs"][VOICE_TRANSFER_RUN]
        for part, scored in (("val", f"{speakers['heard']} held out (voice heard)"),
                             ("test", f"{speakers['never_heard']} (voice never heard)")):
            v = run["parts"][part]
            rows.append([speakers["heard"], scored, str(v["clips"]), f"{run['motion_gain']:.2f}",
                         *_stage_vs_still(v), f"{v['opening_corr']['mean']:.2f}"])
        m = uv["machine"]
        sources.append(f"`{RESULTS_REL}/{name}` ({str(uv['date'])[:10]}, {m['cpus']} CPUs, {m['cpu_model']}; "
                       f"{uv['steps']} steps, seed {uv['seed']})")
    header = ["trained on", "scored on", "n", "motion gain (fitted)", "mouth LMD: stage vs still mouth (px)",
              "ratio (difference [95%])", "opening correlation"]
    return (table(header, rows)
            + "\n\nSource: " + "; ".join(sources) + ". The stage's default recipe (`--feature-norm utterance "
            "--voice-augment`) at the gain it fitted on its own speaker's held-out clips; no rendering.")


def render_render_fidelity(res: Results) -> str:
    """Does the texture stage draw the mouth the landmarks ask for, on the trained and the unseen face."""
    rf = res.json("render_fidelity.json")
    names = {"pipeline": "pipeline", "pipeline-scaled": f"pipeline, motion x{rf['scale']:g} before drawing",
             "warp": "warp"}
    def interval(v: dict) -> str:
        return f"{v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"

    rows = []
    for part in ("test", "val"):  # the unseen speaker first
        label = rf["parts"][part]
        methods = rf[part]["methods"]
        asked = methods["pipeline"]["asked_to_real"]
        rows.append([label, "nothing: the asked landmarks themselves", str(asked["n"]), "0", "0", "1",
                     interval(asked)])
        for method, words in names.items():
            v = methods[method]
            rows.append([label, words, str(v["lmd_to_real"]["n"]), f"{v['drawn_vs_asked']['mean']:.3f}",
                         f"{v['opening_bias']['mean']:+.4f}", f"{v['opening_slope']['mean']:.2f}",
                         interval(v["lmd_to_real"])])
    m = rf["machine"]
    steps = ", ".join(f"{k} {v['step']}" for k, v in rf["checkpoints"].items())
    return (table(["clips of", "drawn by", "n", "drawn vs asked: mouth LMD (px)", "opening: drawn - asked",
                   "opening slope (drawn on asked)", "mouth LMD to the real video's (px) [95%]"], rows)
            + f"\n\nSource: `{RESULTS_REL}/render_fidelity.json` ({str(rf['date'])[:10]}, {m['cpus']} CPUs, "
            f"{m['cpu_model']}): {rf['what']}; {rf['protocol']}; stages' steps: {steps}; composite "
            f"{rf['composite']}.")


# --------------------------------------------------------------------------------------------------
# Docs: speed tables of the benchmarks


def render_metrics_speed(res: Results) -> str:
    m = res.json("metrics.json")
    c, s = m["cpbd"], m["ssim_psnr"]
    pkg = c["cpbd_package"]
    target = TARGETS["cpbd_speedup"]

    def cpbd(variant: str, label: str, usual: str, with_target: bool) -> list[str]:
        v = c[variant]
        ratio = f"{v['speedup_vs_package']:.1f}x (CPU {v['cpu_speedup_vs_package']:.1f}x)"
        if with_target:
            ratio = (f"**{v['speedup_vs_package']:.1f}x** faster in wall time (target {target:g}x: "
                     f"**{verdict(v['speedup_vs_package'], target)}**); {v['cpu_speedup_vs_package']:.1f}x "
                     f"in CPU time (target: **{verdict(v['cpu_speedup_vs_package'], target)}**)")
        return [label, f"{v['ms_per_frame']:.1f} ms (CPU {v['cpu_ms_per_frame']:.1f} ms)", usual, ratio]

    rows = [
        cpbd("matlab", f"CPBD `matlab` per {c['size']} gray frame ({c['frames']} frames)",
             f"`cpbd` 1.0.7: {pkg['ms_per_frame']:.0f} ms (CPU {pkg['cpu_ms_per_frame']:.0f} ms)", True),
        cpbd("python-cpbd", "CPBD `python-cpbd` (= the package, max difference "
             f"{c['python-cpbd']['max_abs_difference_to_package']:g})", "same", False),
        cpbd("matlab-legacy-canny", "CPBD `matlab-legacy-canny`", "same", False),
        [f"SSIM (gaussian11, colour) + PSNR per {s['size'].split()[0]} frame, "
         f"{s['frames']}-frame clip batched",
         f"{s['talkface_ms_per_frame']:.1f} ms", f"scikit-image per frame: {s['skimage_ms_per_frame']:.1f} "
         "ms",
         f"{s['speedup']:.2f}x (target {TARGETS['ssim_psnr_speedup']:g}x: "
         f"**{verdict(s['speedup'], TARGETS['ssim_psnr_speedup'])}**)"],
    ]
    sources = provenance("metrics.json", m)
    if "evaluate" in m:  # an older file measured evaluate here too
        e = m["evaluate"]
        rows.append([f"`talkface evaluate` ({', '.join(e['metrics'])}; dlib landmarks on both sides), "
                     f"{e['clips']} prepared clips, {e['workers1']['frames']} frames",
                     f"1 worker: **{e['workers1']['frames_per_s']:.1f} frames/s**; 2 workers: "
                     f"{e['workers2']['frames_per_s']:.1f} frames/s", "",
                     f"{e['speedup_2_vs_1_workers']:.2f}x: 2 workers against 1"])
    else:  # issue 22's figure, from bench_evaluate.py
        ev = res.json("evaluate.json")
        what, ours, usual, ratio, target = evaluate_workers_row(ev)
        rows.append([what, ours, usual, f"{ratio}; {target}"])
        sources += "; " + provenance("evaluate.json", ev)
    return (table(["what", "talkface", "the usual tool", "ratio (target)"], rows) + "\n\nSources: "
            + sources + ".")


def render_deepspeech_speed(res: Results) -> str:
    ds = res.json("deepspeech.json")
    rtf, sec, ratio = ds["rtf"], ds["seconds"], ds["ratio_vs_reference"]
    clip_s = ds.get("clip_seconds", ds["audio_seconds"] / ds["batched_clips"])
    rows = [
        [f"talkface, one {ds['audio_seconds']:g} s clip (unbatched)", f"{sec['talkface_unbatched']:.1f}",
         f"{rtf['talkface_unbatched']:.2f}x", f"{ratio['unbatched']:.2f}x"],
        [f"talkface, {ds['batched_clips']} clips of {clip_s:g} s, batch {ds['batch_size']}",
         f"{sec['talkface_batched']:.1f}", f"{rtf['talkface_batched']:.2f}x", f"{ratio['batched']:.2f}x"],
        [f"reference: {ds['reference']}, clip by clip ({ds['reference_audio_seconds']:g} s timed)",
         f"{sec['numpy_reference']:.1f}", f"{rtf['numpy_reference']:.2f}x", "1"],
    ]
    head = (f"Source: {provenance('deepspeech.json', ds)}; device {ds['device']}, {ds['variant']}, "
            "random weights at the "
            f"released sizes (seed {ds['seed']}); {ds['what']}.")
    text = head + "\n\n" + table(["run", "wall s", "real-time factor", "vs reference"], rows)
    sweep = ds.get("batch_sweep")
    if sweep:
        sweep_rows = [[f"{b}{' (default)' if int(b) == ds['batch_size'] else ''}",
                       f"{v['rtf']:.2f}x (min {v['rtf_spread']['min']:.2f}, "
                       f"max {v['rtf_spread']['max']:.2f})",
                       f"{v['rtf_bound']:.1f}x", f"{v['share_of_roofline']:.0%}"]
                      for b, v in sorted(sweep.items(), key=lambda kv: int(kv[0]))]
        text += (f"\n\nBatch size on the same {ds['batched_clips']} clips of {clip_s:g} s (medians of "
                 f"{ds['repeats']} interleaved rounds; the bound is the run's roofline at that batch):\n\n"
                 + table(["clips per forward", "real-time factor", "roofline bound", "share of bound"],
                         sweep_rows))
    return text


def render_landmarks_speed(res: Results) -> str:
    lm = res.json("landmarks.json")

    def row(label: str, d: Mapping) -> list[str]:
        size = "x".join(map(str, d["per_clip"][0]["size"]))
        return [f"{label}, {d['clips']} clips, {size}, {d['frames']} frames",
                f"{d['tracked_ms_per_frame_cpu']:.2f} ms/frame ({d['tracked_fps_cpu']:.0f} fps, "
                f"{d['realtime_factor_cpu']:.1f}x real time)",
                f"{d['naive_ms_per_frame_cpu']:.2f} ms/frame ({d['naive_fps_cpu']:.0f} fps)",
                f"**{d['speedup_cpu']:.2f}x** (wall {d['speedup_wall']:.2f}x)",
                f"{d['mean_dev_px']:.2f} / {d['p95_dev_px']:.2f} / {d['max_dev_px']:.1f} px",
                f"{100 * d['detector_runs_fraction']:.1f}%"]

    rows = [row("GRID s1", lm["grid_360x288"]), row("VoxCeleb-style", lm["voxceleb_style_224x224"])]
    return (table(["clips", "tracked (CPU)", "naive per-frame (CPU)", "speed-up", "deviation from per-frame "
                   "(mean / p95 / max)", "frames detected"], rows)
            + f"\n\nSource: {provenance('landmarks.json', lm)}; {lm['timing']}; "
            f"naive side: {lm['baseline']}.")


def render_texture_speed(res: Results) -> str:
    tg = res.json("texture_generate.json")
    r = tg["results"]["cpu"]
    size, target = tg["image_size"], TARGETS["generation_fps"]
    median = r["fps_after_features_median"]
    rows = [
        [f"texture training, samples/s (batch {r['train_batch']}, D + G step)",
         f"{r['texture_train_samples_per_s']:.1f}", f"{r['pix2pix_train_samples_per_s']:.1f}",
         f"{r['ratio_train_vs_pix2pix']:.1f}x"],
        ["generation after features (stages 1-3 + render + G), fps",
         (f"{median:.1f} (median; {r['fps_after_features_worst']:.1f}-{r['fps_after_features_best']:.1f})"
          if "fps_after_features_best" in r else f"{r['fps_after_features']:.1f} (median {median:.1f})"),
         f"{r['pix2pix_unet128_fps']:.1f} (G only)", f"{r['ratio_fps_vs_pix2pix']:.1f}x"],
        ["the same with H.264 + AAC encoding, fps",
         (f"{r['fps_after_features_with_h264_median']:.1f} (median; best "
          f"{r['fps_after_features_with_h264_best']:.1f})" if "fps_after_features_with_h264_best" in r
          else f"{r['fps_after_features_with_h264']:.1f} (median "
               f"{r['fps_after_features_with_h264_median']:.1f})"),
         "", ""],
    ]
    head = f"at {size}x{size}, CPU {r['precision']}, {tg['cpu_threads']} threads"
    return (table([head, "talkface", "pix2pix", "ratio"], rows)
            + f"\n\nThe generation target (>= {target:g} fps on CPU, median after features): "
            f"**{verdict(median, target)}** ({median:.1f} fps median, "
            f"{r.get('fps_after_features_best', r['fps_after_features']):.1f} best). "
            f"Timing: {tg['timing_rule']}; weights {tg['weights']}.\n\nSource: "
            + provenance("texture_generate.json", tg) + ".")


def render_train_landmarks(res: Results) -> str:
    t = res.json("train_landmarks.json")
    c = t["cpu"]
    windows = t["unit"].split("(")[-1].rstrip(")")
    rows = [[f"landmark stage training, CPU, batch {t['batch_size']} ({windows}), "
             f"{t['threads']} threads, {t['steps']} steps",
             f"{c['talkface_fabric_samples_per_s']:.1f} samples/s through the talkface Fabric loop vs "
             f"{c['plain_torch_samples_per_s']:.1f} samples/s for a bare PyTorch loop with the same model, "
             f"data and loss (ratio {c['ratio_talkface_over_plain']:.2f})"]]
    gpu = "measured" if "cuda" in t else "not measured (no GPU figure in the file)"
    rows.append(["GPU", gpu])
    return table(["what", "number"], rows) + "\n\nSource: " + provenance("train_landmarks.json", t) + "."


_SCALE_RUNS = {"process_1": "`-j 1` (1 process)", "process_2": "`-j 2` (2 worker processes)",
               "ray_2_nodes": "`--executor ray`, 2 nodes x 1 CPU"}


def render_prepare_scale(res: Results) -> str:
    """docs/scale.md: prepare on N clips with 1 and 2 worker processes and on a two-node Ray cluster."""
    p = res.json("prepare_scale.json")
    runs, targets = p["runs"], p["targets"]
    x_target, mem_target = targets["x_real_time_per_core_2_workers"], targets["peak_rss_per_worker_mib"]
    rows = []
    for key, r in runs.items():
        m, later = r["memory"], r["tenths"][1:] or r["tenths"]
        rates = [t["clips_per_s"] for t in later]
        ratio = r.get("last_vs_second_tenth", {}).get("clips_per_s_ratio")
        rows.append([
            _SCALE_RUNS.get(key, key),
            f"{r['wall_s']:.0f} s, {r['clips_per_s']:.2f} clips/s",
            f"{r['x_real_time_per_core']:.1f}x ({r['steady_x_real_time_per_core']:.1f}x)",
            f"{r['cpu_s_per_clip']:.2f}",
            f"{min(rates):.2f}-{max(rates):.2f}"
            + (f" (last/second {ratio:.2f})" if ratio is not None else ""),
            f"{m['peak_rss_per_worker_mib']:.0f} MiB ({later[0]['worker_peak_rss_mib']:.0f} -> "
            f"{later[-1]['worker_peak_rss_mib']:.0f})",
            f"{m['peak_rss_total_mib']:.0f} / {m['peak_pss_total_mib']:.0f} MiB",
        ])
    body = table(["run", "wall, clips/s", "x real time per core (after the first tenth)", "CPU s a clip",
                  "clips/s in tenths 2-10", "peak RSS per worker (largest worker, tenth 2 -> 10)",
                  "peak RSS / PSS, all processes"], rows,
                 ["---", "---:", "---:", "---:", "---", "---", "---:"])
    two = runs["process_2"]
    peak = max(r["memory"]["peak_rss_per_worker_mib"] for r in runs.values())
    clip_s = two["video_s"] / two["clips"]
    out = [body, "",
           f"Targets (issue 22; {p['machine']['cores']} cores, {two['clips']} clips): {x_target:g}x real "
           f"time per core with 2 workers, over the whole command: "
           f"**{verdict(two['x_real_time_per_core'], x_target)}** ({two['x_real_time_per_core']:.1f}x), "
           "after "
           f"the first tenth: **{verdict(two['steady_x_real_time_per_core'], x_target)}** "
           f"({two['steady_x_real_time_per_core']:.1f}x); peak RSS per worker < {mem_target / 1024:g} GiB in "
           f"every run: **{verdict(peak, mem_target, higher_is_better=False)}** (at most {peak:.0f} MiB)."]
    if "ray_2_nodes" in runs:
        same, nodes = p["ray_same_as_process_2"], runs["ray_2_nodes"]["nodes"]
        equal = (same["same_clip_ids"] and same["same_statuses"] and same["same_frame_counts"]
                 and same["landmarks_equal"] == same["clips_with_arrays"])
        files = same["byte_identical_files"]
        share = ", ".join(f"{name} {v['clips']} ({v['share']:.0%})"
                          for name, v in nodes["by_node"].items())
        unseen = nodes["clips_not_seen"] + nodes["clips_on_two_nodes"]
        out += ["", f"Ray against `-j 2`: {'the same' if equal else '**not the same**'} clip ids, statuses, "
                f"frame counts and landmark arrays ({same['landmarks_equal']} of {same['clips_with_arrays']} "
                f"clips' landmarks equal); byte-identical: {files['rows']} rows, {files['clips']} npz files, "
                f"{files['crops']} crops of {files['of']}. Clips per node: {share}"
                + (f"; {unseen} not attributed" if unseen else "") + ". Starting the cluster took "
                f"{p['ray_cluster_start_s']:.0f} s (not in the run's time)."]
    loads = "; ".join(f"{_SCALE_RUNS.get(k, k)} {_loads(r['load_average_before'][0])} -> "
                      f"{_loads(r['load_average_after'][0])}" for k, r in runs.items())
    out += ["", f"Measured by `benchmarks/bench_prepare_scale.py` ({p['corpus']['clips']} GRID clips of "
            f"{clip_s:g} s: the {p['corpus']['fixture_clips']} s1 fixture videos linked under distinct "
            "names; "
            f"each run the CLI in a fresh process; RSS sampled every {two['memory']['interval_s']:g} s). "
            f"{provenance('prepare_scale.json', p)}; 1-minute load before -> after each run: {loads}."]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# What make demo prints (bench_demo.py) and the model shipped with talkface


PRETRAINED_INDEX = "talkface/data/pretrained/model_index.json"
_SHIPPED_METRICS = (("lmd_mouth", "LMD mouth (px) ↓", ".2f"), ("psnr", "PSNR (dB) ↑", ".2f"),
                    ("ssim", "SSIM ↑", ".3f"), ("blink_rate", "blinks /min (real: {real})", ".1f"),
                    ("identity_dlib", "identity distance ↓", ".3f"))


def _demo_row(demo: Mapping, method: str, metric: str) -> Mapping | None:
    return next((r for r in demo["rows"] if r["method"] == method and r["metric"] == metric), None)


def _mean_ci(row: Mapping | None, fmt: str) -> str:
    if row is None or row.get("mean") is None:
        return "–"
    half = (row["ci_high"] - row["ci_low"]) / 2 if row.get("ci_high") is not None else None
    return f"{row['mean']:{fmt}}" + (f" ± {half:{fmt}}" if half is not None else "")


def render_demo(res: Results) -> str:
    """README: the table one full `talkface demo` run printed, with how the run was made."""
    d = res.json("demo.json")
    minutes = d["elapsed_s"] / 60
    return (leaderboard_table(res.text("demo.leaderboard.md")) + "\n\n"
            f"(`{d['command']}`, {minutes:.0f} min; the table's footnotes are in `{RESULTS_REL}/"
            f"demo.leaderboard.md`.) Split: {d['split']}. Training: {d['training']}."
            + (f" Shipped: {d['shipped']}." if d.get("shipped") else "")
            + f" {provenance('demo.json', d)}.")


def _shipped_recipe(index: Mapping) -> str:
    """How the shipped stages read speech and compose frames (``recipe``, in indexes written since)."""
    lm = index["components"]["landmarks"].get("recipe")
    tex = index["components"]["texture"].get("recipe")
    if not lm or not tex:
        return ""
    augmented = (f"voice augmentation (axis warp {lm['voice_warp'][0]:g}-{lm['voice_warp'][1]:g}, "
                 f"{lm['freq_masks']} frequency masks)" if lm["freq_masks"] or lm["voice_warp"] != [1.0, 1.0]
                 else "no voice augmentation")
    return (f"; landmark stage: features standardised per {lm['feature_norm']}, {augmented}, motion gain "
            f"{lm['motion_gain']:g}; texture stage edits the {tex['base']} base, frames composed by "
            f"`{tex['composite']}`")


def render_shipped_model(res: Results) -> str:
    """README and docs/models.md: what the shipped model is and how it scores in the demo run."""
    index = res.json(PRETRAINED_INDEX)
    rows = []
    for stage, c in index["components"].items():
        rows.append([stage, f"`{c['file']}`", str(c["step"]), f"{c['bytes'] / 2**20:.1f} MB",
                     f"`{c['sha256'][:16]}…`"])
    total = sum(c["bytes"] for c in index["components"].values()) / 2**20
    cal = index.get("blink_calibration") or {}
    out = [table(["stage", "file", "step", "size", "SHA-256"], rows, ["---", "---", "---:", "---:", "---"]),
           "",
           f"{total:.1f} MB in all (half precision). Made by `{index['command']}` (seed {index['seed']}, "
           f"budget {index.get('budget') or index.get('steps')}), trained on {index['trained_on']}; talkface "
           f"{index['talkface_version']}"
           + (f"; blink amplitude x{cal['amplitude']:g} from the calibration carried with it"
              if cal.get("carried") and cal.get("applicable") else "") + _shipped_recipe(index)
           + f". Licence: {index['licence']}"]
    try:
        demo = res.json("demo.json")
    except FileNotFoundError:
        return "\n".join(out)
    real = _demo_row(demo, "real data (reference clips)", "blink_rate") or \
        next((r for r in demo["rows"] if r["kind"] == "real" and r["metric"] == "blink_rate"), None)
    real_rate = f"{real['mean']:.1f}" if real and real.get("mean") is not None else "?"
    header = ["method"] + [label.format(real=real_rate) for _, label, _ in _SHIPPED_METRICS]
    body = [[m] + [_mean_ci(_demo_row(demo, m, metric), fmt) for metric, _, fmt in _SHIPPED_METRICS]
            for m in ("shipped", "ours", "static-frame") if any(r["method"] == m for r in demo["rows"])]
    n = next((r["n_clips"] for r in demo["rows"] if r["method"] == "shipped"), None)
    out += ["", f"In `make demo` (the {n:.0f} held-out built-in clips, which it never trained on; mean ± "
            "half the 95% bootstrap interval; `ours` is the demo's few-minute training):", "",
            table(header, body, ["---"] + ["---:"] * len(_SHIPPED_METRICS)), "",
            provenance("demo.json", demo) + "."]
    return "\n".join(out)


def render_evaluate_cache(res: Results) -> str:
    ev = res.json("evaluate.json")
    if "second_method_cache_1_worker" not in ev:  # bench_evaluate.py --skip-cache
        return ("The reference-landmark cache was not measured in the latest `benchmarks/bench_evaluate.py` "
                f"run (`{RESULTS_REL}/evaluate.json`, run with `--skip-cache`; "
                f"{provenance('evaluate.json', ev)}).")
    c1, c2 = ev["second_method_cache_1_worker"], ev["second_method_cache_2_workers"]
    n1, n2 = ev["second_method_no_cache_1_worker"], ev["second_method_no_cache_2_workers"]
    ref, ratios = ev["reference_landmarks_step_alone"], ev["ratios"]
    per_clip = ev["frames"] // ev["clips"]
    slower = ratios["workers_2_vs_1_cache_wall"] < 1 and ratios["workers_2_vs_1_no_cache_wall"] < 1
    median = "wall_s_median" in c1
    workers = (
        f"With 2 worker processes the same run was {'slower' if slower else 'not slower'} than with 1 (wall "
        f"{ratios['workers_2_vs_1_no_cache_wall']:.2f}x the 1-worker speed without the cache, "
        f"{ratios['workers_2_vs_1_cache_wall']:.2f}x with it; "
        f"{_cpu(c2):.1f}-{_cpu(n2):.1f} "
        "CPU s)")
    if slower:
        workers += (": each spawned worker imports the stack and loads the models before its first clip, "
                    f"which {ev['clips']} clips on two cores do not repay")
    how = "the median" if median else "the fastest"
    load = " These figures were measured under load." if ev.get("cache_under_load") else ""
    return (
        f"Measured by `benchmarks/bench_evaluate.py` (`{RESULTS_REL}/evaluate.json`; {ev['clips']} prepared "
        f"GRID s1 clips, {ev['frames']} frames, {', '.join(ev['metrics'])}; each figure {how} of "
        f"{ev['repeats']} fresh "
        f"processes; {provenance('evaluate.json', ev)}): the step the cache replaces, tracking one clip's "
        f"{per_clip} reference frames, costs {ref['track_ms_per_clip_cpu']:.0f} ms of CPU "
        f"({ref['track_ms_per_clip_wall']:.0f} ms wall) against {ref['cache_read_ms_per_clip_wall']:.1f} ms "
        f"to read its entry; a whole second-method evaluation takes {_cpu(c1):.2f} CPU s with the "
        f"cache against {_cpu(n1):.2f} without ({ratios['cache_speedup_1_worker_cpu']:.2f}x; wall "
        f"{_wall(c1):.2f} s against {_wall(n1):.2f} s, "
        f"{ratios['cache_speedup_1_worker_wall']:.2f}x),"
        " the rest being decoding, the other metrics, landmarks on the generated frames and start-up. "
        f"{workers}. Cached rows equal uncached ones: {'yes' if ev['cached_rows_equal_uncached'] else 'no'}. "
        f"On a shared machine, read the CPU seconds.{load}")


# --------------------------------------------------------------------------------------------------
# Docs: measurements of the metrics, baselines, corpora


def render_identity_separation(res: Results) -> str:
    """docs/evaluate_learned.md: identity_dlib's two measures on same and other speakers."""
    d = res.json("identity_separation.json")
    rows = [[r["label"], f"{r['euclidean']:.3f}", f"{r['cosine']:.3f}"] for r in d["rows"]]
    same, other = d["largest_same_speaker_euclidean"], d["smallest_other_speaker_euclidean"]
    verdict_text = ("separates" if d["separated_at_threshold"] else "does **not** separate")
    return (table(["compared with the identity image", "`euclidean`", "`cosine`"], rows)
            + f"\n\nThe {d['threshold']:g} threshold {verdict_text} same from other speakers here (same "
            f"speaker at most {same:.3f}, another speaker at least {other:.3f}). Identity image: "
            f"{d['identity_image']}; every {d['frame_step']}th frame scored; landmarks: {d['landmarks']}. "
            f"Measured by `benchmarks/bench_identity_separation.py`; source: "
            + provenance("identity_separation.json", d) + ".")


def render_learned_metrics_speed(res: Results) -> str:
    """docs/evaluate_learned.md: CPU cost of LPIPS, the dlib descriptor and SyncNet."""
    d = res.json("learned_metrics.json")
    items = d["items"]

    def cell(key: str, extra: str = "") -> list[str]:
        it = items[key]
        return [it["what"], f"{it['cpu_ms']:.0f} ms CPU ({it['wall_ms']:.0f} ms wall){extra}"]

    sync = items["syncnet_window"]
    rows = [cell("lpips_alex_128"), cell("lpips_vgg_128"), cell("dlib_descriptor"),
            cell("lpips_alex_tid2013"),
            cell("syncnet_window", f"; {sync['grid_clip_windows']} windows per 75-frame GRID clip: about "
                 f"{sync['grid_clip_cpu_s']:.1f} CPU s")]
    return (table(["work", "time"], rows) + f"\n\nOne torch and one OpenCV thread; {d['timing']}. "
            "Measured by `benchmarks/bench_learned_metrics.py`; source: "
            + provenance("learned_metrics.json", d) + ".")


def render_baselines(res: Results) -> str:
    """docs/baselines.md: ground-truth and static-frame on GRID s1 fixture clips."""
    d = res.json("baselines.json")
    rows = []
    for name, m in d["methods"].items():
        sk = m["skimage_psnr"]
        ev = m["evaluate"]
        psnr = ev["psnr:colour-range255-cap100"]
        ssim = ev["ssim:gaussian11-colour-range255"]
        rows.append([name, f"{sk['mean']:.2f} dB [{sk['min']:.2f}, {sk['max']:.2f}]",
                     f"{psnr['mean']:.2f} [{psnr['ci95'][0]:.2f}, {psnr['ci95'][1]:.2f}]",
                     f"{ssim['mean']:.4f} [{ssim['ci95'][0]:.4f}, {ssim['ci95'][1]:.4f}]"])
    n = {m["clips"] for m in d["methods"].values()}
    n_text = "/".join(str(x) for x in sorted(n))
    cost = ", ".join(f"`{name}` {m['command_cpu_s_per_clip']:.2f} CPU s" for name, m in d["methods"].items())
    parts = ", ".join(f"{k} {v}" for k, v in d["parts"].items() if v)
    return (table(["method", f"PSNR vs reference crops, scikit-image, mean over {n_text} clips [min, max]",
                   "`talkface evaluate` `psnr:colour-range255-cap100` [95%]",
                   "`ssim:gaussian11-colour-range255` [95%]"], rows)
            + f"\n\nProtocol `{d['protocol']}` ({parts}), crops {d['crop_size']} px. Each command's CPU time "
            f"per clip (decode, frames, encode at {d['crop_size']} px; process start included): {cost}. "
            "Measured by `benchmarks/bench_baselines.py`; source: " + provenance("baselines.json", d) + ".")


def render_corpora_discovery(res: Results) -> str:
    """docs/corpora.md: GRID discovery of the fixtures and of a synthetic full-size tree."""
    d = res.json("corpora.json")
    f, s = d["fixtures"], d["synthetic_full_size"]
    share = s["seen_split"]["shares"]
    return (f"Discovery of a synthetic full-size GRID tree ({s['speakers']} speakers x "
            f"{s['clips_per_speaker']:,} videos with alignment files, {s['layout']}; "
            f"{s['video_files']} video files; built in a temporary folder) took {s['wall_s']:.1f} s wall, "
            f"{s['cpu_s']:.1f} CPU s "
            f"({s['cpu_ms_per_clip']:.3f} CPU ms a clip, reading and checking every .align file); the "
            f"{f['clips']} fixture clips discover in {1e3 * f['wall_s']:.0f} ms. The seen split puts "
            f"{100 * share['train']:.1f} / {100 * share['val']:.1f} / {100 * share['test']:.1f}% of the "
            f"synthetic tree's {s['clips']:,} ids in train / val / test. "
            f"{d['timing'][:1].upper()}{d['timing'][1:]}. Measured by `benchmarks/bench_corpora.py`; source: "
            + provenance("corpora.json", d) + ". Discovery has no "
            "speed target and no comparable tool runs offline here, so there is no ratio.")


# --------------------------------------------------------------------------------------------------
# Figures derived from several numbers (inline ``<!-- fig NAME -->``)


def _calibration_rows(res: Results) -> list[dict]:
    rows = []
    for line in res.text("docs/calibration.md").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0].startswith("`") and cells[4] not in ("reference value", "---:"):
            rows.append({"metric": cells[0].strip("`"), "variant": cells[1].strip("`"), "item": cells[2],
                         "reference": float(cells[4]), "talkface": float(cells[5]),
                         "difference": float(cells[6])})
    return rows


def _max_abs_diff(res: Results, metric: str, variant: str) -> str:
    diffs = [abs(r["difference"]) for r in _calibration_rows(res)
             if (r["metric"], r["variant"]) == (metric, variant)]
    return f"{max(diffs):.1g}"


def _n_pairs(res: Results, metric: str) -> str:
    return str(len([r for r in _calibration_rows(res) if r["metric"] == metric and "TID2013" in r["item"]]))


def _cpbd_img1(res: Results) -> str:
    key = ("cpbd", "matlab", "LIVE img1")
    row = next(r for r in _calibration_rows(res) if (r["metric"], r["variant"], r["item"]) == key)
    return f"{row['talkface']:.5f} vs {row['reference']:.5f}"


def _blink_ratio_lo(res: Results) -> str:
    t = lookup(res.json("pipeline_quality.json"), "targets[a=pipeline,b=ground-truth,metric=blink_rate]")
    return f"{1 + t['diff_lo'] / t['mean_b']:.2f}"  # type: ignore[index]


def _ds_share(res: Results, run: str) -> str:
    ds = res.json("deepspeech.json")
    return f"{100 * ds['rtf'][f'talkface_{run}'] / ds['roofline'][f'rtf_bound_{run}']:.0f}"


def _ds_target(res: Results) -> str:
    ds = res.json("deepspeech.json")
    target = ds.get("target_rtf", TARGETS["deepspeech_rtf"])
    text = verdict(ds["rtf"]["talkface_batched"], target)
    if ds["roofline"]["rtf_bound_batched"] < target:
        text += ", and cannot be in float32 on this machine"
    return text


def _ds_madds(res: Results) -> str:
    ds = res.json("deepspeech.json")
    return f"{ds['roofline']['gflop_per_audio_second'] * 1e3 / 50 / 2:.0f}"


def _quick_generate_s(res: Results) -> str:
    return f"{sum(res.json('pipeline_quality.quick.json')['generation']['seconds'].values()):.0f}"


def _quick_minutes(res: Results) -> str:
    q = res.json("pipeline_quality.quick.json")
    total = q["training"]["wall_s"] + sum(q["generation"]["seconds"].values()) + q["evaluate_s"]
    return f"{total / 60:.0f}"


def _blink_duration_ratio(res: Results) -> str:
    d = res.json("blink_annotation.json")["default"]
    return f"{d['duration_detected'] / d['duration_marked']:.1f}"


def _second_worker(res: Results) -> str:
    """How much a second worker adds to evaluate's throughput, in words, from the file that measures it."""
    ev = res.json("evaluate.json")
    speedup = (ev["workers"]["speedup_2_vs_1_workers"] if "workers" in ev
               else res.json("metrics.json")["evaluate"]["speedup_2_vs_1_workers"])
    return f"{speedup:.2f}x the throughput of one" if speedup >= 1 else f"slower ({speedup:.2f}x)"


def _calibration_rate(res: Results, amplitude: float | None) -> str:
    """Blinks per minute in generated frames at one amplitude of the blink calibration (the chosen one
    when None); the grid's keys are amplitudes written with a dot, so no inline path reaches them."""
    cal = res.json("pipeline_quality.json")["generation"]["provenance"]["blink_amplitude"]["calibration"]
    key = f"{cal['amplitude'] if amplitude is None else amplitude:g}"
    return f"{cal['generated_blinks_per_min'][key]:.1f}"


_FLOOR_BLINK = {"rate": "blink_rate:ear-adaptive0.75-min2",
                "duration": "blink_duration:ear-adaptive0.75-min2",
                "duration-closed": "blink_duration:ear-adaptive0.75-min2-closed0.6"}


def _floor_blink(res: Results, which: str, spec: str) -> str:
    """A blink metric's floor (mean |re-encoded - original|); its key holds a dot, so no inline path."""
    return format(res.json("metric_floors.json")["metrics"][_FLOOR_BLINK[which]]["mean_abs_difference"], spec)


def _floors_failed(res: Results) -> str:
    d = res.json("metric_floors.json")
    not_ok, chosen = d["clips_not_ok"], d["clips_chosen"]
    if not not_ok:
        return f"all {len(chosen)} chosen clips prepared with status ok"
    ids = ", ".join(f"`{c}`" for c in not_ok)
    return (f"{len(not_ok)} of the {len(chosen)} chosen clips ({ids}) {'is' if len(not_ok) == 1 else 'are'} "
            "not scored (prepared with a status other than ok)")


def _redetect_verdict(res: Results) -> str:
    r = res.json("metric_floors.json")["lmd_redetection"]
    lower = [r[f"mean_lmd_{p}_redetected"] < r[f"mean_lmd_{p}_tracked"] - 0.01 for p in ("mouth", "face")]
    if all(lower):
        return "lowers it"
    return "lowers it on one point set only" if any(lower) else "does not lower it"


DERIVED: dict[str, tuple[tuple[str, ...], Callable[[Results], str]]] = {
    "blink.default-duration-ratio": (("blink_annotation.json",), _blink_duration_ratio),
    "metrics.second-worker": (("evaluate.json", "metrics.json"), _second_worker),
    "calibration.cpbd-matlab-img1": (("docs/calibration.md",), _cpbd_img1),
    "calibration.lpips-alex-max-diff": (("docs/calibration.md",),
                                        lambda r: _max_abs_diff(r, "lpips", "alex")),
    "calibration.lpips-pairs": (("docs/calibration.md",), lambda r: _n_pairs(r, "lpips")),
    "calibration.psnr-max-diff": (("docs/calibration.md",),
                                  lambda r: _max_abs_diff(r, "psnr", "colour-range255-cap100")),
    "calibration.ssim-wang-max-diff": (("docs/calibration.md",),
                                       lambda r: _max_abs_diff(r, "ssim", "wang-matlab")),
    "pipeline.blink-rate-ratio-lo": (("pipeline_quality.json",), _blink_ratio_lo),
    "deepspeech.unbatched-share-of-bound": (("deepspeech.json",), lambda r: _ds_share(r, "unbatched")),
    "deepspeech.batched-share-of-bound": (("deepspeech.json",), lambda r: _ds_share(r, "batched")),
    "deepspeech.target-verdict": (("deepspeech.json",), _ds_target),
    "deepspeech.madds-per-step-M": (("deepspeech.json",), _ds_madds),
    "quick.generate-s": (("pipeline_quality.quick.json",), _quick_generate_s),
    "quick.minutes": (("pipeline_quality.quick.json",), _quick_minutes),
    "pipeline.calibration-rate-at-1": (("pipeline_quality.json",), lambda r: _calibration_rate(r, 1.0)),
    "pipeline.calibration-rate-chosen": (("pipeline_quality.json",), lambda r: _calibration_rate(r, None)),
    "floors.blink-rate": (("metric_floors.json",), lambda r: _floor_blink(r, "rate", ".1f")),
    "floors.blink-duration": (("metric_floors.json",), lambda r: _floor_blink(r, "duration", ".2f")),
    "floors.blink-duration-closed": (("metric_floors.json",),
                                     lambda r: _floor_blink(r, "duration-closed", ".2f")),
    "floors.failed": (("metric_floors.json",), _floors_failed),
    "floors.redetect-verdict": (("metric_floors.json",), _redetect_verdict),
}


def inline_figure(spec: str, res: Results) -> str:
    """The text of ``<!-- fig SPEC -->``: ``FILE:PATH [FORMAT]`` or a ``DERIVED`` name."""
    spec = spec.strip()
    if spec in DERIVED:
        return DERIVED[spec][1](res)
    if spec.startswith("provenance:"):  # the file's date, machine and load, as provenance() gives them
        name = spec.split(":", 1)[1].strip()
        return provenance(name, res.json(name))
    depth, cut = 0, len(spec)
    for i, ch in enumerate(spec):  # the format starts at the first space outside [...]
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == " " and depth == 0:
            cut = i
            break
    target, fmt = spec[:cut], spec[cut:]
    if ":" not in target:
        raise KeyError(f"inline figure {spec!r}: neither FILE:PATH nor a DERIVED name")
    name, path = target.split(":", 1)
    scale = 1.0
    m = re.fullmatch(r"(.*?)([*/])([0-9.]+)", path)
    if m:
        path, op, number = m.group(1), m.group(2), float(m.group(3))
        scale = number if op == "*" else 1 / number
    value = lookup(res.json(name), path)
    if scale != 1.0:
        value = value * scale  # type: ignore[operator]
    return format_value(value, fmt.strip())


# --------------------------------------------------------------------------------------------------
# Regions


@dataclass(frozen=True)
class Region:
    name: str
    docs: tuple[str, ...]
    sources: tuple[str, ...]
    render: Callable[[Results], str]


REGIONS: dict[str, Region] = {
    r.name: r
    for r in [
        Region("speed", ("README.md",), SPEED_SOURCES, render_speed),
        Region("grid-leaderboard", ("README.md",),
               ("pipeline_quality.leaderboard.md", "pipeline_quality.json"), render_grid_leaderboard),
        Region("pipeline-targets", ("README.md", "docs/models.md"), ("pipeline_quality.json",),
               render_pipeline_targets),
        Region("pipeline-run", ("docs/models.md",), ("pipeline_quality.json",), render_pipeline_run),
        Region("train-landmarks", ("docs/models.md",), ("train_landmarks.json",), render_train_landmarks),
        Region("metrics-speed", ("docs/evaluate.md",), ("metrics.json", "evaluate.json"),
               render_metrics_speed),
        Region("deepspeech-speed", ("docs/deepspeech.md",), ("deepspeech.json",), render_deepspeech_speed),
        Region("landmarks-speed", ("docs/landmarks.md",), ("landmarks.json",), render_landmarks_speed),
        Region("texture-generate-speed", ("docs/texture_generate.md",), ("texture_generate.json",),
               render_texture_speed),
        Region("evaluate-cache", ("docs/scale.md",), ("evaluate.json",), render_evaluate_cache),
        Region("prepare-scale", ("docs/scale.md",), ("prepare_scale.json",), render_prepare_scale),
        Region("demo", ("README.md",), ("demo.json", "demo.leaderboard.md"), render_demo),
        Region("shipped-model", ("README.md", "docs/models.md"), (PRETRAINED_INDEX, "demo.json"),
               render_shipped_model),
        Region("unseen-identities", ("README.md", "docs/models.md"), ("unseen_identities.json",),
               render_unseen_identities),
        Region("unseen-runs", ("docs/models.md",), tuple(name for name, _ in UNSEEN_RUNS),
               render_unseen_runs),
        Region("blink-hold", ("docs/models.md",), tuple(n for n, _ in BLINK_HOLD_RUNS), render_blink_hold),
        Region("unheard-voices", ("docs/models.md",), ("unheard_voices.json",), render_unheard_voices),
        Region("voice-transfer", ("docs/models.md",), ("unheard_voices.json", "unheard_voices.reverse.json"),
               render_voice_transfer),
        Region("render-fidelity", ("docs/models.md",), ("render_fidelity.json",), render_render_fidelity),
        Region("identity-separation", ("docs/evaluate_learned.md",), ("identity_separation.json",),
               render_identity_separation),
        Region("learned-metrics-speed", ("docs/evaluate_learned.md",), ("learned_metrics.json",),
               render_learned_metrics_speed),
        Region("baselines-grid", ("docs/baselines.md",), ("baselines.json",), render_baselines),
        Region("corpora-discovery", ("docs/corpora.md",), ("corpora.json",), render_corpora_discovery),
    ]
}

REGION_RE = re.compile(r"<!-- figures:(?P<name>[\w.-]+) begin(?P<note>[^\n]*?)-->\n(?P<body>.*?)"
                       r"<!-- figures:(?P=name) end -->", re.S)
ANY_BEGIN_RE = re.compile(r"<!-- figures:([\w.-]+) begin")
INLINE_RE = re.compile(r"<!-- fig (?P<spec>[^\n>]*?) -->(?P<value>[^<\n]*)<!-- /fig -->")


def begin_marker(name: str, sources: Sequence[str]) -> str:
    files = ", ".join(s if "/" in s else f"{RESULTS_REL}/{s}" for s in sources)
    return (f"<!-- figures:{name} begin: rendered by scripts/render_figures.py from {files}; "
            "edit the script, not this text -->")


@dataclass
class Change:
    kind: str  # "region", "figure" or "error"
    name: str
    old: str
    new: str


def rewrite(text: str, region: Callable[[str], tuple[Sequence[str], str]],
            figure: Callable[[str], str]) -> tuple[str, list[Change]]:
    """Rewrite every region and inline figure of ``text``.

    ``region(name)`` gives a region's (sources, body); ``figure(spec)`` an inline figure's text. Returns
    the new text and what changed (a region whose body or begin marker differs, a figure whose value
    differs), plus an "error" change for a begin marker without its end marker.
    """
    changes: list[Change] = []

    def sub_region(m: re.Match) -> str:
        name = m.group("name")
        sources, body = region(name)
        body = body.rstrip("\n") + "\n"
        marker = begin_marker(name, sources)
        old = f"<!-- figures:{name} begin{m.group('note')}-->"
        if body != m.group("body") or marker != old:
            changes.append(Change("region", name, m.group("body"), body))
        return f"{marker}\n{body}<!-- figures:{name} end -->"

    new = REGION_RE.sub(sub_region, text)
    matched = {m.group("name") for m in REGION_RE.finditer(text)}
    for name in ANY_BEGIN_RE.findall(text):
        if name not in matched:
            changes.append(Change("error", name, "", f"region {name!r} has a begin marker but no end marker"))

    def sub_figure(m: re.Match) -> str:
        value = figure(m.group("spec"))
        if value != m.group("value"):
            changes.append(Change("figure", m.group("spec").strip(), m.group("value"), value))
        return f"<!-- fig {m.group('spec')} -->{value}<!-- /fig -->"

    return INLINE_RE.sub(sub_figure, new), changes


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render_all(root: Path = ROOT, res: Results | None = None) -> dict[Path, tuple[str, str, list[Change]]]:
    """Every document's (old text, new text, changes), including missing and unknown regions as errors."""
    res = res or Results(root / "benchmarks" / "results", root=root)
    out = {}
    for path in documents(root):
        rel = path.relative_to(root).as_posix()
        old = path.read_text(encoding="utf-8")
        unknown: list[Change] = []

        def region(name: str, unknown: list[Change] = unknown) -> tuple[Sequence[str], str]:
            if name not in REGIONS:
                unknown.append(Change("error", name, "", f"unknown region {name!r} (not in REGIONS)"))
                return (), ""
            try:
                return REGIONS[name].sources, REGIONS[name].render(res)
            except (KeyError, IndexError, TypeError, ValueError, OSError) as exc:
                unknown.append(Change("error", name, "", f"region {name!r} cannot be rendered: {exc!r}"))
                return (), ""

        def figure(spec: str, unknown: list[Change] = unknown) -> str:
            try:
                return inline_figure(spec, res)
            except (KeyError, IndexError, TypeError, ValueError, OSError) as exc:
                unknown.append(Change("error", spec, "", f"figure {spec!r} cannot be rendered: {exc!r}"))
                return ""

        new, changes = rewrite(old, region, figure)
        present = {m.group("name") for m in REGION_RE.finditer(old)}
        for r in REGIONS.values():
            if rel in r.docs and r.name not in present:
                changes.append(Change("error", r.name, "", f"region {r.name!r} is missing (no markers)"))
        if unknown:  # leave the document as it is; report only what could not be rendered
            new = old
            broken = {u.name for u in unknown}
            changes = [c for c in changes if c.name not in broken]
        out[path] = (old, new, unknown + changes)
    return out


def describe(path: Path, change: Change, root: Path = ROOT) -> str:
    rel = path.relative_to(root).as_posix()
    if change.kind == "error":
        return f"{rel}: {change.new}"
    if change.kind == "figure":
        return f"{rel}: figure `{change.name}` is stale: {change.old!r} -> {change.new!r}"
    diff = difflib.unified_diff(change.old.splitlines(), change.new.splitlines(), "text", "from the files",
                                lineterm="", n=0)
    lines = [line for line in diff if not line.startswith(("---", "+++"))]
    shown = "\n".join("    " + line for line in lines[:12])
    more = f"\n    ... ({len(lines) - 12} more lines)" if len(lines) > 12 else ""
    return f"{rel}: region `{change.name}` is stale (or its begin marker is):\n{shown}{more}"


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 naming each region or figure that differs from its file")
    args = parser.parse_args(argv)
    results = render_all(root)
    problems = [(p, c) for p, (_, _, changes) in results.items() for c in changes]
    errors = [(p, c) for p, c in problems if c.kind == "error"]
    if args.check:
        for path, change in problems:
            print(describe(path, change, root))
        if problems:
            print(f"{len(problems)} stale or broken figure(s): run python scripts/render_figures.py")
            return 1
        print("README.md and docs/*.md agree with benchmarks/results/")
        return 0
    for path, (old, new, _) in results.items():
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(root).as_posix()}")
    for path, change in errors:
        print(describe(path, change, root))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
