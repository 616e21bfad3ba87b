"""The study page in headless Chromium: a participant clicks (and types) through a whole study, reloads
half way, downloads the answers; hostile names stay text; "next" waits for the videos to end.

``TALKFACE_WRITE_DOCS_IMAGES=1`` also saves the screenshot in docs/images/study_page.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_study_support import make_tiny_clip

from talkface.study.analyze import load_key, read_responses, run_analyze
from talkface.study.export import ExportConfig, run_export

XSS_METHOD = "<script>alert(1)</script>"
XSS_CLIP = "<img src=x onerror=alert(1)>"
XSS_TITLE = "<script>alert('title')</script> & <b>bold</b>"
XSS_QUESTION = "<img src=y onerror=alert(2)> Which one?"
DOCS_IMAGE = Path(__file__).resolve().parents[1] / "docs" / "images" / "study_page.png"


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study_browser")
    methods = {}
    for k, name in enumerate([XSS_METHOD, "plainmethod"]):
        for c, clip in enumerate([XSS_CLIP, "clip2"]):
            make_tiny_clip(root / f"m{k}" / f"{clip}.mp4", seed=10 * k + c, tone_hz=200 + 100 * c)
        methods[name] = root / f"m{k}"
    make_tiny_clip(root / "m0" / "spare.mp4", seed=77)
    make_tiny_clip(root / "m1" / "spare.mp4", seed=78)
    run_export(ExportConfig(methods=list(methods.items()), out=root / "study", design="ab", clips=2,
                            participants=2, seed=5, checks=1, title=XSS_TITLE,
                            custom_questions=[("xss", XSS_QUESTION)]), progress=False)
    return root / "study"


def _open(page, study: Path, participant: int) -> list[str]:
    dialogs: list[str] = []

    def on_dialog(d):
        dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.goto((study / "site" / "index.html").as_uri() + f"?p={participant}")
    return dialogs


def _play_all(page, n: int) -> None:
    for i in range(n):
        page.click(f"#play-{i}")
        page.wait_for_selector(f"#state-{i}.done", timeout=20_000)


def test_complete_a_study_with_a_reload(browser_page, hostile_study):
    page = browser_page
    key = load_key(hostile_study / "key.json")
    dialogs = _open(page, hostile_study, 2)

    # hostile strings from options are shown as text, never parsed as HTML or run
    assert page.inner_text("h1") == XSS_TITLE
    assert page.title() == XSS_TITLE
    assert page.locator("main b, main img, main script").count() == 0
    assert page.locator("#participant").input_value() == "2"
    page.click("#start")
    assert page.inner_text("fieldset:nth-of-type(4) legend") == XSS_QUESTION

    trials = key["participants"][1]["trials"]
    n = len(trials)
    assert n == 3 and page.inner_text("#count") == f"Trial 1 of {n}"
    clicks: list[dict[str, int]] = []
    qids = [q["id"] for q in key["questions"]]

    # trial 1 by keyboard only: Enter on the focused Play button, Tab onwards, Space/arrows to answer
    assert page.evaluate("document.activeElement.id") == "play-0"
    page.keyboard.press("Enter")
    page.wait_for_selector("#state-0.done", timeout=20_000)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#state-1.done", timeout=20_000)
    chosen = {}
    for qi, q in enumerate(qids):
        page.keyboard.press("Tab")
        if qi % 2:
            page.keyboard.press("ArrowRight")  # moves to and selects the second option
            chosen[q] = 1
        else:
            page.keyboard.press("Space")
            chosen[q] = 0
    clicks.append(chosen)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "next"
    page.keyboard.press("Enter")
    page.wait_for_selector("#count:has-text('Trial 2 of 3')")

    # trial 2 with the mouse: answering first still leaves "next" blocked until both videos ended
    chosen = {q: (i + 1) % 2 for i, q in enumerate(qids)}
    for i, q in enumerate(qids):
        page.check(f"#q{i}-{chosen[q]}")
    assert page.is_disabled("#next") and "play both videos" in page.inner_text("#hint")
    page.click("#play-0")
    assert page.is_disabled("#next")  # still playing
    page.wait_for_selector("#state-0.done", timeout=20_000)
    assert page.is_disabled("#next")
    page.click("#play-1")
    assert page.is_disabled("#next")
    page.wait_for_selector("#state-1.done", timeout=20_000)
    assert page.is_enabled("#next")
    page.click("#next")
    clicks.append(chosen)

    # reload half way: the page continues at trial 3 with the earlier answers kept
    page.reload()
    assert page.inner_text("#count") == "Trial 3 of 3"
    assert "continuing where you left off" in page.inner_text("main")
    _play_all(page, 2)
    chosen = {q: 1 for q in qids}
    for i, _q in enumerate(qids):
        page.check(f"#q{i}-1")
    clicks.append(chosen)
    page.click("#next")

    with page.expect_download() as dl:
        page.click("#download")
    path = Path(dl.value.path())
    doc = json.loads(path.read_text())
    assert dl.value.suggested_filename == f"responses-{key['study_id']}-p2.json"
    assert doc["participant"] == 2 and doc["study_id"] == key["study_id"] and doc["reloads"] == 1
    assert [t["answers"] for t in doc["trials"]] == clicks
    assert [t["videos"] for t in doc["trials"]] == [t["videos"] for t in trials]
    accepted, skipped = read_responses(key, [path])
    assert len(accepted) == 1 and not skipped  # real timings pass the analysis's checks
    # a reload after the end shows the download again, not the study
    page.reload()
    assert page.locator("#download").count() == 1
    assert dialogs == [] and page.console_errors == []

    # the answers analyse; the report names the hostile method as text
    report, result, skipped = run_analyze(hostile_study / "key.json", [path], hostile_study.parent / "report")
    assert result["n_included"] + result["n_excluded_by_checks"] == 1 and not skipped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report.read_text()


def test_hostile_names_never_reach_the_page(hostile_study):
    for path in (hostile_study / "site").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for s in (XSS_METHOD, XSS_CLIP, "plainmethod", "<script>alert", "<img src"):
                assert s.encode() not in data, (s, path)
    html = (hostile_study / "site" / "index.html").read_text()
    assert html.count("<script") == 2  # the data block and the page's own script, nothing else
    assert "\\u003cscript\\u003ealert('title')" in html  # the title, escaped inside the JSON


@pytest.mark.parametrize("design, option, answer", [("mos", 3, {"realism": 4}),
                                                    ("real-or-fake", 1, {"judgement": "fake"})])
def test_single_video_pages(browser_page, tmp_path, design, option, answer):
    """mos and real-or-fake on tiny clips: one video per trial, the chosen value downloaded."""
    page = browser_page
    src = {}
    for k, name in enumerate(["alpha", "beta"]):
        make_tiny_clip(tmp_path / name / "c1.mp4", seed=k)
        src[name] = tmp_path / name
    run_export(ExportConfig(methods=list(src.items()), out=tmp_path / "study", design=design, clips=1,
                            participants=1, questions=["realism"] if design == "mos" else None, checks=0),
               progress=False)
    _open(page, tmp_path / "study", 1)
    page.click("#start")
    for _ in range(2):
        assert page.locator("#play-1").count() == 0  # one video per trial
        page.check(f"#q0-{option}")  # mos: "4 - Good"; real-or-fake: "Generated"
        assert page.is_disabled("#next")
        _play_all(page, 1)
        page.click("#next")
    with page.expect_download() as dl:
        page.click("#download")
    doc = json.loads(Path(dl.value.path()).read_text())
    assert [t["answers"] for t in doc["trials"]] == [answer, answer]
    assert page.console_errors == []


def test_screenshot_for_docs(browser_page, prepared_grid, tmp_path):
    """The ab page on real GRID crops (the dataset against a still-frame baseline); the screenshot goes
    to docs/images/study_page.png when TALKFACE_WRITE_DOCS_IMAGES=1."""
    from talkface.core.media import read_audio, read_video, write_video
    from talkface.store.dataset import Dataset, is_usable

    ds = Dataset.open(prepared_grid)
    clips = sorted(r.clip_id for r in ds.records() if is_usable(r))[:2]
    (tmp_path / "still").mkdir()
    for clip in clips:
        frames = read_video(ds.crop_path(clip))
        write_video(tmp_path / "still" / f"{clip}.mp4", [frames[0]] * len(frames), 25,
                    read_audio(ds.crop_path(clip)))
    run_export(ExportConfig(methods=[("real", prepared_grid), ("still", tmp_path / "still")],
                            out=tmp_path / "study", clips=2, participants=2, seed=7, checks=0,
                            title="Which talking face looks better?"), progress=False)
    page = browser_page
    page.set_viewport_size({"width": 1000, "height": 900})
    _open(page, tmp_path / "study", 1)
    page.click("#start")
    page.click("#play-0")
    page.wait_for_selector("#state-0.done", timeout=30_000)
    page.check("#q0-0")
    page.check("#q1-0")
    assert page.is_disabled("#next")
    shot = page.screenshot(full_page=True)
    assert len(shot) > 10_000
    if os.environ.get("TALKFACE_WRITE_DOCS_IMAGES") == "1":
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        DOCS_IMAGE.write_bytes(shot)
    assert page.console_errors == []


def test_sequence_layout_plays_in_order(browser_page, tmp_path):
    """--layout sequence: First/Second video, the second can only be played after the first ended."""
    src = {}
    for k, name in enumerate(["alpha", "beta"]):
        make_tiny_clip(tmp_path / name / "c1.mp4", seed=k)
        src[name] = tmp_path / name
    run_export(ExportConfig(methods=list(src.items()), out=tmp_path / "study", layout="sequence", clips=1,
                            participants=1, questions=["lipsync"], checks=0), progress=False)
    page = browser_page
    _open(page, tmp_path / "study", 1)
    page.click("#start")
    assert page.inner_text("figcaption >> nth=0") == "First video"
    assert page.is_disabled("#play-1") and page.is_enabled("#play-0")
    page.click("#play-0")
    page.wait_for_selector("#state-0.done", timeout=20_000)
    assert page.is_enabled("#play-1")
    page.check("#q0-1")
    assert page.inner_text(".options label >> nth=1").strip() == "Second video"
    assert page.is_disabled("#next")
    page.click("#play-1")
    page.wait_for_selector("#state-1.done", timeout=20_000)
    page.click("#next")
    page.wait_for_selector("#download")
    assert page.console_errors == []


def test_answers_are_posted_to_the_post_url(browser_page, tmp_path):
    """--post-url: at the end the page POSTs the same JSON it offers for download (to a server on the
    loopback address that allows the cross-origin request, as a real collector must)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[bytes] = []

    class Collect(BaseHTTPRequestHandler):
        def _cors(self):
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.send_header("Access-Control-Allow-Methods", "POST")

        def do_OPTIONS(self):  # noqa: N802
            self.send_response(204)
            self._cors()
            self.end_headers()

        def do_POST(self):  # noqa: N802
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self._cors()
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        make_tiny_clip(tmp_path / "only" / "c1.mp4", seed=3)
        url = f"http://127.0.0.1:{server.server_port}/collect"
        run_export(ExportConfig(methods=[("only", tmp_path / "only")], out=tmp_path / "study", design="mos",
                                clips=1, participants=1, questions=["lipsync"], checks=0, post_url=url),
                   progress=False)
        page = browser_page
        _open(page, tmp_path / "study", 1)
        page.click("#start")
        page.check("#q0-4")
        _play_all(page, 1)
        page.click("#next")
        page.wait_for_selector("#post-status:has-text('were sent')", timeout=10_000)
        with page.expect_download() as dl:
            page.click("#download")
        assert len(received) == 1
        assert json.loads(received[0]) == json.loads(Path(dl.value.path()).read_text())
        assert json.loads(received[0])["trials"][0]["answers"] == {"lipsync": 5}
        page.reload()  # sent once: a reload of the final screen does not send again
        page.wait_for_selector("#download")
        assert len(received) == 1 and page.console_errors == []
    finally:
        server.shutdown()
        server.server_close()
