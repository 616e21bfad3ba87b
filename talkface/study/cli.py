"""``talkface study export`` and ``talkface study analyze``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from talkface.utils.cli_kit import fail

study_app = typer.Typer(
    help=(
        "User studies of generated talking faces: export a blinded, balanced questionnaire (a static "
        "folder to publish, and a key kept apart), then analyse the participants' answers. "
        "See docs/study.md."
    ),
    no_args_is_help=True,
)


@study_app.command("export")
def export(
    method: list[str] = typer.Option(
        ..., "--method", "-m",
        help="NAME=PATH, once per method. PATH: a folder of generated <clip_id>.mp4 videos, or a prepared "
             "dataset (its usable real crops). Clips present for every method are used. NAME is shown as "
             "given and may hold spaces and '=' (the '=' before the existing PATH ends it).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Study folder: writes OUT/site/ (publish it) and "
                             "OUT/key.json (keep it private)."),
    design: str = typer.Option("ab", "--design", help="ab: two videos, pick the better (pairs of methods); "
                               "mos: one video, rate 1-5; real-or-fake: one video, real or generated?"),
    questions: str = typer.Option(
        None, "--questions", help="Comma-separated built-in questions: realism, lipsync, identity "
        "(default: all three; not for real-or-fake)."),
    question: list[str] = typer.Option(
        [], "--question", help="Extra question ID=TEXT (repeatable), e.g. 'sharp=Which video is sharper?'."),
    clips: int = typer.Option(20, "--clips", min=1,
                              help="Clips drawn (by --seed) from those every method has."),
    participants: int = typer.Option(30, "--participants", min=1, help="Participant slots (each gets a "
                                     "balanced list; send participant N the page with ?p=N)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same inputs and seed give the same export."),
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Items per participant (default: every item: clips x method pairs for "
        "ab, clips x methods otherwise); items are dealt so each is shown equally often."),
    checks: int = typer.Option(2, "--checks", min=0, help="Attention checks per participant: a clip against "
                               "a copy with its audio delayed 0.5 s and a choppy picture."),
    check_method: str | None = typer.Option(
        None, "--check-method", help="Method whose clips the attention checks use; its lips must move "
        "(default: the first prepared dataset, i.e. the real recordings, else the first --method)."),
    layout: str = typer.Option("side-by-side", "--layout", help="ab only: side-by-side or sequence."),
    post_url: str | None = typer.Option(None, "--post-url", help="Also POST the answers as JSON to this "
                                        "http(s) URL at the end (the download is always offered)."),
    title: str = typer.Option("Talking-face video study", "--title", help="Title shown on the page."),
    instructions: str | None = typer.Option(None, "--instructions", help="Text of the welcome screen "
                                            "(blank line = new paragraph; default: per design)."),
    size: int | None = typer.Option(None, "--size", min=16, help="Video size in pixels (square; default: "
                                    "the smallest side among the sources)."),
    fps: float = typer.Option(25.0, "--fps", help="Frame rate of every published video."),
    loudness: float = typer.Option(-20.0, "--loudness", help="Integrated loudness of every video, LUFS."),
    crf: int = typer.Option(20, "--crf", min=0, max=51, help="x264 quality (lower = better, larger)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Processes encoding clips in parallel."),
) -> None:
    """Export a blinded study: OUT/site/ to publish, OUT/key.json to keep.

    Every video is re-encoded to one codec (H.264/AAC MP4), size, frame
    rate and loudness, stripped of metadata, given a random name and
    padded to one byte size: nothing in site/ tells which method made it.
    Assignment is balanced (each pair and order equally often, trial order
    by a balanced Latin square); attention checks with known answers are
    mixed in. Send participant N the page with ?p=N.

    Example:
      talkface study export --method ours=out/ours
        --method static=out/static --method real=data/grid-prepared
        --design ab --questions realism,lipsync,identity --clips 20
        --participants 30 --seed 7 --out study/
    """
    from talkface.study.export import ExportConfig, run_export
    from talkface.study.sources import StudyError, parse_method
    from talkface.utils.progress import console

    try:
        methods = [parse_method(m) for m in method]
        custom = []
        for q in question:
            qid, sep, text = q.partition("=")
            if not sep:
                raise StudyError(f"--question takes ID=TEXT, not {q!r}")
            custom.append((qid.strip(), text))
        names = [n.strip() for n in questions.split(",") if n.strip()] if questions is not None else None
        cfg = ExportConfig(methods=methods, out=out, design=design, questions=names, custom_questions=custom,
                           clips=clips, participants=participants, seed=seed, trials=trials, checks=checks,
                           check_method=check_method,
                           layout=layout, post_url=post_url, title=title, instructions=instructions,
                           size=size, fps=fps, loudness_lufs=loudness, crf=crf, workers=workers)
        result = run_export(cfg)
    except StudyError as exc:
        fail(exc)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    typer.echo(f"study {result.study_id}: {result.n_videos} videos of {result.file_size} bytes each, "
               f"{min(result.n_trials)}-{max(result.n_trials)} trials per participant")
    typer.echo(f"publish: {result.site}/  (open {result.site / 'index.html'}?p=1 to try it)")
    typer.echo(f"keep private: {result.key}")


@study_app.command("analyze")
def analyze(
    key: Path = typer.Argument(..., help="The study's key.json (written by `talkface study export`)."),
    responses: list[Path] = typer.Argument(..., help="Response files downloaded from the page (JSON)."),
    out: Path = typer.Option(Path("study-report"), "--out", "-o", help="Report folder: report.md, "
                             "results.json, plot_<question>.png."),
    max_check_failures: int = typer.Option(0, "--max-check-failures", min=0, help="Exclude participants "
                                           "who fail more attention checks than this."),
) -> None:
    """Analyse the answers: a Markdown report, results.json and plots.

    Per question and method pair: preference rate, 95% Wilson interval,
    exact binomial test, Holm-adjusted p. MOS: mean, t interval,
    Mann-Whitney U with Holm. Attention-check failures are excluded and
    counted; agreement is Krippendorff's alpha. Malformed or tampered
    files (wrong study id, other videos than assigned, impossible
    timings) and byte-identical copies are listed in the report and
    skipped (a copy names the file kept). Refused instead, with one
    error line: a damaged file (empty, truncated, not JSON), and two
    different files of one participant (pass only the one that counts,
    usually the first attempt).

    Example:
      talkface study analyze study/key.json responses/*.json
        --out study-report/
    """
    from talkface.study.analyze import run_analyze
    from talkface.study.sources import StudyError
    from talkface.utils.progress import console

    try:
        report, result, skipped = run_analyze(key, responses, out, max_check_failures=max_check_failures)
    except StudyError as exc:
        fail(exc)
    for s in skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(s.file)}: {escape(s.reason)}", highlight=False)
    typer.echo(f"{result['n_included']} participants analysed, {result['n_excluded_by_checks']} excluded by "
               f"attention checks, {len(skipped)} files skipped")
    typer.echo(f"report: {report}")


@study_app.command("simulate")
def simulate_cmd(
    key: Path = typer.Argument(..., help="The study's key.json."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Folder for one synthetic response file per participant."),
    strength: list[str] = typer.Option(
        [], "--strength", help="METHOD=S, repeatable: a method's strength (default 0). ab: A beats B with "
        "probability sigmoid(S_A - S_B); mos: ratings around 3 + S; real-or-fake: real with sigmoid(S)."),
    inattentive: float = typer.Option(0.0, "--inattentive", min=0.0, max=1.0,
                                      help="Share of participants who answer at random."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic answers."),
) -> None:
    """Write synthetic response files, to pilot the analysis before real answers exist.

    Example:
      talkface study simulate study/key.json --strength real=1.5
        --inattentive 0.1 --out pilot-responses/
    """
    import json

    from talkface.study.analyze import load_key
    from talkface.study.simulate import simulate
    from talkface.study.sources import StudyError
    from talkface.utils import atomic

    try:
        study = load_key(key)
        strengths = {}
        for s in strength:
            name, sep, value = s.rpartition("=")
            if not sep or name not in study["method_order"]:
                raise StudyError(f"--strength takes METHOD=NUMBER with a method of this study "
                                 f"({', '.join(study['method_order'])}), not {s!r}")
            try:
                strengths[name] = float(value)
            except ValueError:
                raise StudyError(f"--strength {s!r}: {value!r} is not a number") from None
    except StudyError as exc:
        fail(exc)
    docs = simulate(study, strengths, seed=seed, inattentive=inattentive)
    for doc in docs:
        atomic.write_text(out / f"responses-p{doc['participant']:03d}.json", json.dumps(doc, indent=1) + "\n")
    typer.echo(f"{len(docs)} synthetic response files in {out}/")


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
