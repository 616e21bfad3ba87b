"""``talkface study export``: a blinded, balanced study package.

Layout of ``OUT/``::

    OUT/site/index.html        the questionnaire page (publish this folder, nothing else)
    OUT/site/media/<token>.mp4 every video, re-encoded alike and padded to one byte size
    OUT/key.json               which token is which method, clip and variant; each participant's
                               trials and the attention checks' known answers (never published)

Nothing in ``site/`` reveals the key: file names are random tokens, every video has the same codec,
size, frame rate, loudness, byte size and no metadata, files are written in token order with one
common modification time, and the page lists only tokens. The randomness is seeded by ``--seed``
together with a digest of the source videos, so the same inputs and seed give a byte-identical
export, while someone who guesses the seed still cannot replay the assignment without the sources.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkface import __version__
from talkface.core.media import MediaError
from talkface.study.design import (
    BUILTIN_QUESTIONS,
    DESIGNS,
    LAYOUTS,
    MOS_LABELS,
    Plan,
    Question,
    make_plan,
)
from talkface.study.media import (
    SAMPLE_RATE,
    EncodeSettings,
    common_size,
    degrade,
    encode,
    fit_length,
    load_audio,
    load_frames,
    normalise_loudness,
    pad_mp4,
)
from talkface.study.page import PAGE_FORMAT, build_page, check_post_url
from talkface.study.sources import MethodSource, StudyError, common_clips, open_method
from talkface.utils import atomic
from talkface.utils.provenance import sha256_file

KEY_FORMAT = "talkface-study-key"
KEY_VERSION = 1
FIXED_MTIME = 946684800  # 2000-01-01: every published file gets this modification time
DEFAULT_QUESTIONS = ("realism", "lipsync", "identity")
DEFAULT_TITLE = "Talking-face video study"


@dataclass
class ExportConfig:
    methods: list[tuple[str, Path]]
    out: Path
    design: str = "ab"
    questions: list[str] | None = None
    custom_questions: list[tuple[str, str]] = field(default_factory=list)
    clips: int = 20
    participants: int = 30
    seed: int = 0
    trials: int | None = None
    checks: int = 2
    check_method: str | None = None
    layout: str = "side-by-side"
    post_url: str | None = None
    title: str = DEFAULT_TITLE
    instructions: str | None = None
    size: int | None = None
    fps: float = 25.0
    loudness_lufs: float = -20.0
    crf: int = 20
    workers: int = 1


@dataclass
class ExportResult:
    out: Path
    site: Path
    key: Path
    study_id: str
    n_videos: int
    n_trials: list[int]
    file_size: int
    warnings: list[str]


def default_instructions(design: str, layout: str) -> str:
    if design == "ab":
        how = ("Each screen shows two videos of a talking person" +
               (" one after the other" if layout == "sequence" else " side by side") +
               ". Play each video to the end (one at a time, with sound), then answer every question "
               "by choosing one of the two.")
    elif design == "mos":
        how = ("Each screen shows one video of a talking person. Play it to the end with sound, then rate "
               "it from 1 (bad) to 5 (excellent) on every question.")
    else:
        how = ("Each screen shows one video of a talking person. Play it to the end with sound, then say "
               "whether you think it is a real recording or a generated video.")
    return (how + "\n\nPlease use headphones or speakers in a quiet place. Your progress is kept in this "
            "browser, so you can reload the page and carry on. At the end you can download your answers.")


def resolve_questions(design: str, names: list[str] | None, custom: list[tuple[str, str]]) -> list[Question]:
    builtin = BUILTIN_QUESTIONS[design]
    if design == "real-or-fake":
        if names or custom:
            raise StudyError("the real-or-fake design asks one fixed question (real recording or "
                             "generated?); leave out --questions and --question")
        return list(builtin.values())
    names = list(DEFAULT_QUESTIONS) if names is None else names
    out: list[Question] = []
    for name in names:
        if name not in builtin:
            raise StudyError(f"unknown question {name!r}; built in: {', '.join(builtin)} "
                             "(add your own with --question ID=TEXT)")
        out.append(builtin[name])
    for qid, text in custom:
        if not qid or not qid.replace("_", "").replace("-", "").isalnum() or not text.strip():
            raise StudyError(f"--question takes ID=TEXT with a short letters/digits id, not {qid}={text!r}")
        out.append(Question(qid, text.strip(), checkable=False))
    ids = [q.id for q in out]
    if len(set(ids)) != len(ids):
        raise StudyError(f"question ids repeat: {ids}")
    if not out:
        raise StudyError("no questions: give --questions and/or --question")
    return out


def question_options(design: str, layout: str) -> list[dict[str, Any]]:
    if design == "ab":
        labels = ("First video", "Second video") if layout == "sequence" else ("Left video", "Right video")
        return [{"value": i, "label": lab} for i, lab in enumerate(labels)]
    if design == "mos":
        return [{"value": i + 1, "label": f"{i + 1} \u2013 {lab}"} for i, lab in enumerate(MOS_LABELS)]
    return [{"value": "real", "label": "Real recording"}, {"value": "fake", "label": "Generated"}]


def study_secret(cfg: ExportConfig, sources: list[MethodSource], clips: list[str],
                 questions: list[Question]) -> bytes:
    """The seed for every random choice after clip selection: the seed, the settings and the SHA-256
    of every source video in the study (unknowable from the published, re-encoded files)."""
    h = hashlib.sha256()
    h.update(f"talkface-study/{cfg.seed}/{cfg.design}/{cfg.layout}/{cfg.participants}/{cfg.trials}/"
             f"{cfg.checks}".encode())
    h.update(json.dumps([[q.id, q.text] for q in questions]).encode())
    for s in sources:
        h.update(b"\0method\0" + s.name.encode())
        for c in clips:
            h.update(b"\0" + c.encode() + b"\0" + sha256_file(s.clips[c]).encode())
    return h.digest()


def run_export(cfg: ExportConfig, progress: bool = True) -> ExportResult:
    if cfg.design not in DESIGNS:
        raise StudyError(f"unknown design {cfg.design!r}; choose one of {', '.join(DESIGNS)}")
    if cfg.layout not in LAYOUTS:
        raise StudyError(f"unknown layout {cfg.layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not cfg.methods:
        raise StudyError("give at least one --method NAME=PATH")
    names = [n for n, _ in cfg.methods]
    if len(set(names)) != len(names):
        raise StudyError(f"method names repeat: {names}")
    if cfg.design == "ab" and len(names) < 2:
        raise StudyError("the ab design compares two methods at a time: give at least two --method")
    if cfg.participants < 1 or cfg.clips < 1:
        raise StudyError("--clips and --participants must be at least 1")
    try:
        post_url = check_post_url(cfg.post_url)
    except ValueError as exc:
        raise StudyError(str(exc)) from None
    questions = resolve_questions(cfg.design, cfg.questions, cfg.custom_questions)
    out = Path(cfg.out)
    if out.name == "site" or (out / "index.html").exists():
        raise StudyError(f"--out {out} looks like a published folder; give the study folder that will hold "
                         "site/ and key.json side by side")

    sources = [open_method(n, Path(p)) for n, p in cfg.methods]
    common = common_clips(sources)
    if cfg.clips > len(common):
        raise StudyError(f"--clips {cfg.clips} but only {len(common)} clips are present for every method")
    pick = np.random.default_rng(cfg.seed).choice(len(common), size=cfg.clips, replace=False)
    clips = sorted(common[i] for i in pick)
    spare = [c for c in common if c not in set(clips)]
    # attention checks need lips that move: the real recordings when a dataset is given
    check_method = cfg.check_method or next((s.name for s in sources if s.kind == "dataset"), names[0])

    warnings: list[str] = []
    secret = study_secret(cfg, sources, clips, questions)
    rng = np.random.default_rng(int.from_bytes(secret[:16], "big"))
    study_id = "tfs-" + hashlib.sha256(secret + b"study-id").hexdigest()[:16]
    try:
        plan = make_plan(cfg.design, names, clips, spare, questions, cfg.participants, rng,
                         trials=cfg.trials, checks=cfg.checks, check_method=check_method)
    except ValueError as exc:
        raise StudyError(str(exc)) from None
    if cfg.checks and not spare:
        warnings.append("every common clip is in the study, so attention checks reuse study clips")
    if cfg.checks and not any(q.checkable for q in questions) and cfg.design != "real-or-fake":
        warnings.append("no question has a known answer for attention checks (only realism and lipsync do); "
                        "checks are shown but cannot fail")

    by_name = {s.name: s for s in sources}
    media_keys = plan.media_keys()
    try:
        size = cfg.size or _auto_size(by_name, media_keys)
    except MediaError as exc:
        raise StudyError(f"a source video cannot be read: {exc}") from None
    settings = EncodeSettings(size=size - size % 2, fps=cfg.fps, crf=cfg.crf, loudness_lufs=cfg.loudness_lufs)
    tokens = _tokens(media_keys, rng)

    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "encoded").mkdir(parents=True)
    try:
        try:
            media_info = _encode_all(plan, by_name, tokens, settings, staging / "encoded", cfg.workers,
                                     progress, warnings)
        except MediaError as exc:
            raise StudyError(f"a source video cannot be read: {exc}") from None
        sizes = [(staging / "encoded" / f"{t}.mp4").stat().st_size for t in tokens.values()]
        target = common_size(sizes)
        site = staging / "site"
        (site / "media").mkdir(parents=True)
        for token in sorted(tokens.values()):  # written in token order: creation order says nothing
            src = staging / "encoded" / f"{token}.mp4"
            pad_mp4(src, target)
            shutil.copyfile(src, site / "media" / f"{token}.mp4")
        options = question_options(cfg.design, cfg.layout)
        builtin_ids = {q.id for q in questions if BUILTIN_QUESTIONS[cfg.design].get(q.id) == q}
        page = {
            "format": PAGE_FORMAT,
            "version": 1,
            "study_id": study_id,
            "design": cfg.design,
            "layout": cfg.layout if cfg.design == "ab" else "single",
            "title": cfg.title,
            "instructions": cfg.instructions or default_instructions(cfg.design, cfg.layout),
            "questions": [{"id": q.id, "text": q.text, "options": options} for q in questions],
            "participants": [[[f"{tokens[m]}.mp4" for m in t.media] for t in trials]
                             for trials in plan.participants],
            "post_url": post_url,
        }
        html = build_page(page)
        atomic.write_text(site / "index.html", html)
        for path in [site / "index.html", site / "media", site, *sorted((site / "media").iterdir())]:
            os.utime(path, (FIXED_MTIME, FIXED_MTIME))
        # the page's own wording: the page with no title, no trials, and only built-in texts
        own = build_page({**page, "title": "", "study_id": "", "participants": [], "post_url": None,
                          "instructions": "" if cfg.instructions else page["instructions"],
                          "questions": [q for q in page["questions"] if q["id"] in builtin_ids]})
        leaks = scan_for_leaks(site, names, clips + spare, own_text=own)
        for leak in leaks:
            warnings.append(f"{leak['file']} contains the {leak['kind']} name {leak['name']!r} "
                            "(check whether the page's own text or chance explains it)")
        key = {
            "format": KEY_FORMAT,
            "version": KEY_VERSION,
            "study_id": study_id,
            "talkface_version": __version__,
            "seed": cfg.seed,
            "design": cfg.design,
            "layout": page["layout"],
            "questions": [{"id": q.id, "text": q.text, "checkable": q.checkable, "options": options}
                          for q in questions],
            "methods": {s.name: s.to_key() for s in sources},
            "method_order": names,
            "clips": clips,
            "spare_clips": len(spare),
            "settings": {**settings.to_dict(), "participants": cfg.participants,
                         "trials_per_participant": cfg.trials, "checks": cfg.checks, "clips": cfg.clips,
                         "post_url": post_url, "title": cfg.title},
            "items": plan.items,
            "checks": [{"method": m, "clip": c} for m, c in plan.check_sources],
            "media": {f"{tokens[k]}.mp4": media_info[tokens[k]] for k in media_keys},
            "participants": [
                {"participant": p + 1, "trials": [t.to_key({k: f"{v}.mp4" for k, v in tokens.items()})
                                                  for t in trials]}
                for p, trials in enumerate(plan.participants)
            ],
            "published": {"file_size": target, "files": len(tokens),
                          "index_sha256": hashlib.sha256(html.encode()).hexdigest()},
            "warnings": warnings,
        }
        atomic.write_json(staging / "key.json", key)
        final_site = out / "site"
        old = out / f".site-old-{os.getpid()}"
        if final_site.exists():
            os.replace(final_site, old)
        os.replace(site, final_site)
        os.utime(final_site, (FIXED_MTIME, FIXED_MTIME))
        os.replace(staging / "key.json", out / "key.json")
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return ExportResult(out, out / "site", out / "key.json", study_id, len(tokens),
                        [len(t) for t in plan.participants], target, warnings)


def _auto_size(by_name: dict[str, MethodSource], media_keys) -> int:
    """The smallest side among the sources, so no method's video is enlarged."""
    from talkface.core.media import probe_video

    sides = set()
    for method, clip, _ in media_keys:
        info = probe_video(by_name[method].clips[clip])
        sides.add(min(info.width, info.height))
    return min(sides)


def _tokens(media_keys, rng: np.random.Generator) -> dict[tuple[str, str, str], str]:
    tokens: dict[tuple[str, str, str], str] = {}
    used: set[str] = set()
    for key in media_keys:
        while True:
            tok = rng.bytes(8).hex()
            if tok not in used:
                break
        used.add(tok)
        tokens[key] = tok
    return tokens


def _encode_all(plan: Plan, by_name, tokens, settings, folder: Path, workers: int, progress: bool,
                warnings: list[str]) -> dict[str, dict]:
    """Encode every video, one job per clip (all its methods are loaded together so their length and
    audio can be matched)."""
    from talkface.utils.progress import make_progress

    jobs: dict[str, list[tuple[str, str, str]]] = {}
    for key in tokens:
        jobs.setdefault(key[1], []).append(key)
    tasks = []
    for clip, keys in sorted(jobs.items()):
        methods = sorted({m for m, _, _ in keys})
        # a study clip is matched across every study method; a spare (check) clip only its own
        if clip in plan.clips:
            methods = list(plan.methods)
        tasks.append((clip, {m: str(by_name[m].clips[clip]) for m in methods},
                      [(k, tokens[k]) for k in keys], settings, str(folder)))
    info: dict[str, dict] = {}
    bar = make_progress() if progress else None
    if bar:
        bar.start()
        task = bar.add_task("encoding study videos", total=len(tokens), info="")
    try:
        if workers > 1 and len(tasks) > 1:
            # spawn, not fork: a forked copy of a process that holds threads (torch's, a progress bar's,
            # a caller's) can die on a lock some thread held at the fork
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
                for result, notes in pool.map(_encode_clip, tasks):
                    info.update(result)
                    warnings.extend(notes)
                    if bar:
                        bar.update(task, advance=len(result))
        else:
            for t in tasks:
                result, notes = _encode_clip(t)
                info.update(result)
                warnings.extend(notes)
                if bar:
                    bar.update(task, advance=len(result), info=f"clip {t[0]}")
    finally:
        if bar:
            bar.stop()
    return info


def _encode_clip(task) -> tuple[dict[str, dict], list[str]]:
    clip, paths, keys, settings, folder = task
    frames = {m: load_frames(p, settings.fps, settings.size) for m, p in paths.items()}
    audio = {m: load_audio(p) for m, p in paths.items()}
    n = min(len(f) for f in frames.values())
    n_samples = int(round(n / settings.fps * SAMPLE_RATE))
    notes = []
    lengths = {len(f) for f in frames.values()}
    if len(lengths) > 1:
        notes.append(f"clip {clip}: frame counts differ across methods {sorted(lengths)}; all trimmed to {n}")
    donor = next((m for m in sorted(audio) if audio[m] is not None), None)
    result: dict[str, dict] = {}
    prepared: dict[str, tuple[np.ndarray, np.ndarray, dict]] = {}
    for method in paths:
        own = audio[method]
        audio_from = method if own is not None else donor
        samples = audio[audio_from] if audio_from is not None else np.zeros(n_samples, np.float32)
        samples = fit_length(samples.astype(np.float32), n_samples)
        samples, loud = normalise_loudness(samples, settings.loudness_lufs)
        loud["audio_from"] = audio_from if audio_from != method else "own"
        if audio_from is None:
            loud["audio_from"] = "silence"
        prepared[method] = (frames[method][:n], samples, loud)
    for (method, _clip, variant), token in keys:
        f, a, loud = prepared[method]
        if variant == "degraded":
            f, a = degrade(f, a, settings)
        path = Path(folder) / f"{token}.mp4"
        encode(path, f, a, settings)
        result[token] = {
            "method": method, "clip": clip, "variant": variant or "original", "n_frames": int(len(f)),
            "duration_s": round(len(f) / settings.fps, 4), "audio": loud, "source": paths[method],
        }
        if variant == "degraded":
            result[token]["degradation"] = {"audio_delay_s": settings.check_audio_shift_s,
                                            "picture_hold_fps": settings.check_hold_fps}
    return result, notes


def scan_for_leaks(site: Path, method_names: list[str], clip_ids: list[str], own_text: str = "",
                   min_len: int = 3) -> list[dict[str, str]]:
    """Every (file, name) where a method name or clip id occurs in the bytes of a published file (as
    UTF-8, and as JSON would escape it) more often than in ``own_text``, the page's own wording (so a
    method called "real" is not reported for the question "a real recording?"). Names shorter than
    ``min_len`` are skipped: two bytes turn up by chance in any video."""
    needles = [("method", n) for n in method_names] + [("clip", c) for c in clip_ids]
    own = own_text.encode("utf-8")
    found = []
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for kind, name in needles:
            if len(name) < min_len:
                continue
            forms = {name.encode("utf-8"), json.dumps(name)[1:-1].encode("utf-8")}
            if any(data.count(f) > (own.count(f) if path.suffix == ".html" else 0) for f in forms):
                found.append({"file": str(path.relative_to(site)), "kind": kind, "name": name})
    return found
