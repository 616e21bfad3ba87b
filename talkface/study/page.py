"""The questionnaire page: one static, self-contained ``index.html``.

A small page of our own rather than jsPsych: the study needs a few screens of behaviour (play each
video to the end, answer, next; resume after a reload; download at the end), which is ~300 lines of
plain JavaScript with no build step, no third-party code to audit or update, and a strict
Content-Security-Policy (scripts and styles allowed only by their SHA-256, no network but the
optional POST). jsPsych's video plugins show one video and take one response per trial; two videos
with several questions, resume-after-reload and the download would be our own plugin code anyway,
and its plugins take prompts and labels as HTML strings (see docs/study.md).

Everything that comes from a file name or an option (title, instructions, question texts) travels
as JSON inside ``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped, and the
script builds the page with ``textContent`` only: no string is ever parsed as HTML. The page holds no
method name, clip id or answer key: only anonymous video file names per participant.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

PAGE_FORMAT = "talkface-study-page"
RESPONSE_FORMAT = "talkface-study-responses"


def json_for_script(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>``, ``&`` (and the JavaScript line
    separators) are written as ``\\u`` escapes, so no text can close the element."""
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def check_post_url(url: str | None) -> str | None:
    """An http(s) URL for the optional POST, or a ValueError saying what is wrong with it."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--post-url must be an http:// or https:// URL, not {url!r}")
    if any(c in url for c in " \"'<>;\\`\n\r\t"):
        raise ValueError(f"--post-url contains characters that do not belong in a URL: {url!r}")
    return url


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def build_page(data: dict[str, Any]) -> str:
    """The full ``index.html`` for the page data (see :func:`talkface.study.export.page_data`)."""
    post = check_post_url(data.get("post_url"))
    connect = _origin(post) if post else "'none'"
    csp = (
        f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
        f"media-src 'self'; img-src 'self' data:; connect-src {connect}; form-action 'none'; "
        "base-uri 'none'"
    )
    # the CSP value goes into an attribute: only characters check_post_url admits reach it
    return (
        TEMPLATE.replace("@CSP@", csp.replace("&", "&amp;").replace('"', "&quot;"))
        .replace("@STYLE@", STYLE)
        .replace("@DATA@", json_for_script(data))
        .replace("@SCRIPT@", SCRIPT)
    )


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Study</title>
<style>@STYLE@</style>
</head>
<body>
<main id="app" aria-live="off"><noscript>This study needs JavaScript.</noscript></main>
<div id="live" class="sr-only" role="status" aria-live="polite"></div>
<script type="application/json" id="study-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

STYLE = """
:root { color-scheme: light; --accent: #1f5fbf; --ok: #1e7a3c; --muted: #555; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #111; background: #f6f6f4; }
main { max-width: 980px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 1.5em; margin: 0.2em 0 0.6em; }
p { margin: 0.5em 0; }
.top { display: flex; align-items: center; gap: 16px; margin-bottom: 12px; }
.top progress { flex: 1; height: 12px; }
.count { font-variant-numeric: tabular-nums; color: var(--muted); white-space: nowrap; }
.videos { display: flex; flex-wrap: wrap; gap: 20px; justify-content: center; margin: 8px 0 16px; }
.videos.sequence { flex-direction: column; align-items: center; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 10px;
  text-align: center; }
figcaption { font-weight: 600; margin-bottom: 6px; }
video { display: block; width: 360px; max-width: 80vw; aspect-ratio: 1 / 1; background: #000;
  border-radius: 4px; }
.play { margin-top: 8px; }
.state { display: block; font-size: 0.9em; color: var(--muted); margin-top: 4px; min-height: 1.4em; }
.state.done { color: var(--ok); }
.state.error { color: #b00020; }
fieldset { border: 1px solid #ccc; border-radius: 8px; margin: 0 0 14px; padding: 10px 14px;
  background: #fff; }
legend { font-weight: 600; padding: 0 4px; }
.options { display: flex; flex-wrap: wrap; gap: 8px 18px; }
.options label { display: inline-flex; align-items: center; gap: 6px; padding: 6px 10px;
  border: 1px solid #ddd; border-radius: 6px; cursor: pointer; }
.options input { width: 1.1em; height: 1.1em; }
button, a.button { font: inherit; padding: 8px 18px; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; display: inline-block; }
button.secondary { background: #fff; color: var(--accent); }
button:disabled { background: #bbb; border-color: #bbb; color: #fff; cursor: not-allowed; }
button:focus-visible, a.button:focus-visible, input:focus-visible { outline: 3px solid #f0a500;
  outline-offset: 2px; }
.nav { display: flex; align-items: center; gap: 16px; }
.hint { color: var(--muted); }
input[type=number] { font: inherit; width: 7em; padding: 4px 6px; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
.keys { font-size: 0.9em; color: var(--muted); }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("study-data").textContent);
  var KEY = "talkface-study/" + DATA.study_id;
  var app = document.getElementById("app");
  var live = document.getElementById("live");
  var state = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function clear() { while (app.firstChild) { app.removeChild(app.firstChild); } }
  function say(text) {
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 30);
  }
  function load() {
    try { return JSON.parse(window.localStorage.getItem(KEY)); } catch (e) { return null; }
  }
  function save() {
    try { window.localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode */ }
  }
  function trialsOf(p) { return DATA.participants[p - 1]; }
  function paragraphs(parent, text) {
    String(text || "").split(/\n\s*\n/).forEach(function (para) {
      if (para.trim()) { parent.appendChild(el("p", null, para.trim())); }
    });
  }

  function welcome() {
    clear();
    document.title = DATA.title;
    app.appendChild(el("h1", null, DATA.title));
    paragraphs(app, DATA.instructions);
    app.appendChild(el("p", "keys", "Use the mouse or the keyboard: Tab moves between controls, " +
      "Space or Enter presses a button, the arrow keys choose an answer."));
    var label = el("label", null, "Participant number (1\u2013" + DATA.participants.length + "): ");
    var input = el("input");
    input.type = "number"; input.min = "1"; input.max = String(DATA.participants.length);
    input.id = "participant"; input.required = true;
    var fromUrl = new URLSearchParams(window.location.search).get("p");
    if (fromUrl) { input.value = fromUrl; }
    label.appendChild(input);
    var form = el("form");
    form.appendChild(el("p")).appendChild(label);
    var start = el("button", null, "Start");
    start.type = "submit"; start.id = "start";
    var msg = el("p", "hint");
    form.appendChild(start);
    form.appendChild(msg);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var p = parseInt(input.value, 10);
      if (!(p >= 1 && p <= DATA.participants.length) || String(p) !== input.value.trim()) {
        msg.textContent = "Please enter a whole number from 1 to " + DATA.participants.length + ".";
        input.focus();
        return;
      }
      state = { study_id: DATA.study_id, participant: p, index: 0, trials: [],
                started_at: new Date().toISOString(), reloads: 0, done: false };
      save();
      showTrial();
    });
    app.appendChild(form);
    input.focus();
  }

  function captions() {
    if (DATA.design !== "ab") { return [null]; }
    return DATA.layout === "sequence" ? ["First video", "Second video"] : ["Left video", "Right video"];
  }

  function fullyPlayed(v) {
    if (!isFinite(v.duration) || v.duration <= 0) { return false; }
    var total = 0;
    for (var i = 0; i < v.played.length; i++) { total += v.played.end(i) - v.played.start(i); }
    return total >= v.duration * 0.97 - 0.05;
  }

  function showTrial() {
    clear();
    var trials = trialsOf(state.participant);
    var n = trials.length;
    var files = trials[state.index];
    var shownAt = Date.now();
    var played = files.map(function () { return false; });
    var plays = files.map(function () { return 0; });
    var answers = {};

    var top = el("div", "top");
    var bar = el("progress");
    bar.max = n; bar.value = state.index; bar.id = "progress";
    bar.setAttribute("aria-label", "Progress");
    top.appendChild(el("span", "count", "Trial " + (state.index + 1) + " of " + n)).id = "count";
    top.appendChild(bar);
    app.appendChild(top);
    if (state.resumed) {
      app.appendChild(el("p", "hint", "Welcome back: continuing where you left off."));
      state.resumed = false;
    }

    var box = el("div", "videos" + (DATA.layout === "sequence" ? " sequence" : ""));
    var caps = captions();
    var videos = [], buttons = [], states = [];
    files.forEach(function (file, i) {
      var fig = el("figure");
      if (caps[i]) { fig.appendChild(el("figcaption", null, caps[i])); }
      var v = el("video");
      v.preload = "auto"; v.setAttribute("playsinline", ""); v.disablePictureInPicture = true;
      v.src = "media/" + file;
      v.id = "video-" + i;
      var b = el("button", "play", caps[i] ? "Play " + caps[i].toLowerCase() : "Play video");
      b.type = "button"; b.id = "play-" + i;
      var s = el("span", "state", "Not played yet");
      s.id = "state-" + i;
      v.addEventListener("ended", function () {
        if (fullyPlayed(v)) {
          played[i] = true; s.textContent = "Played to the end \u2713"; s.className = "state done";
        } else {
          s.textContent = "Please play it again from the start, without skipping."; s.className = "state";
        }
        b.textContent = caps[i] ? "Replay " + caps[i].toLowerCase() : "Replay video";
        update();
      });
      v.addEventListener("error", function () {
        s.textContent = "This video cannot be played in this browser; please tell the experimenter.";
        s.className = "state error";
      });
      b.addEventListener("click", function () {
        videos.forEach(function (o) { if (o !== v) { o.pause(); } });
        v.currentTime = 0;
        v.playbackRate = 1;
        plays[i] += 1;
        s.textContent = "Playing\u2026"; s.className = "state";
        var pr = v.play();
        if (pr && pr.catch) {
          pr.catch(function () { s.textContent = "Could not start playback; press Play again."; });
        }
      });
      fig.appendChild(v); fig.appendChild(b); fig.appendChild(s);
      box.appendChild(fig);
      videos.push(v); buttons.push(b); states.push(s);
    });
    app.appendChild(box);

    var form = el("form");
    DATA.questions.forEach(function (q, qi) {
      var fs = el("fieldset");
      fs.appendChild(el("legend", null, q.text));
      var opts = el("div", "options");
      opts.setAttribute("role", "radiogroup");
      q.options.forEach(function (o, oi) {
        var lab = el("label");
        var r = el("input");
        r.type = "radio"; r.name = "q" + qi; r.value = String(oi);
        r.id = "q" + qi + "-" + oi;
        r.addEventListener("change", function () { answers[q.id] = o.value; update(); });
        lab.appendChild(r);
        lab.appendChild(document.createTextNode(o.label));
        opts.appendChild(lab);
      });
      fs.appendChild(opts);
      form.appendChild(fs);
    });
    var nav = el("div", "nav");
    var next = el("button", null, state.index + 1 === n ? "Finish" : "Next");
    next.type = "submit"; next.id = "next"; next.disabled = true;
    var hint = el("span", "hint");
    hint.id = "hint";
    nav.appendChild(next); nav.appendChild(hint);
    form.appendChild(nav);
    app.appendChild(form);

    function missing() {
      var m = [];
      var unplayed = played.filter(function (x) { return !x; }).length;
      if (unplayed) {
        m.push(files.length > 1 ? "play both videos to the end" : "play the video to the end");
      }
      var unanswered = DATA.questions.filter(function (q) { return !(q.id in answers); }).length;
      if (unanswered) { m.push("answer " + (unanswered === 1 ? "the question" : "every question")); }
      return m;
    }
    function update() {
      if (DATA.layout === "sequence") {
        buttons.forEach(function (b, i) { b.disabled = i > 0 && !played[i - 1]; });
      }
      var m = missing();
      next.disabled = m.length > 0;
      hint.textContent = m.length ? "To continue, " + m.join(" and ") + "." : "Ready.";
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (missing().length) { update(); return; }
      videos.forEach(function (v) { v.pause(); });
      var now = Date.now();
      state.trials.push({ index: state.index, videos: files.slice(), answers: answers,
                          shown_at_ms: shownAt, answered_at_ms: now, duration_ms: now - shownAt,
                          plays: plays });
      state.index += 1;
      if (state.index >= n) {
        state.done = true; state.finished_at = new Date().toISOString();
        save(); finish();
      } else {
        save(); showTrial();
        say("Trial " + (state.index + 1) + " of " + n);
      }
    });
    update();
    buttons[0].focus();
  }

  function responses() {
    return { format: "talkface-study-responses", version: 1, study_id: DATA.study_id,
             design: DATA.design, participant: state.participant, started_at: state.started_at,
             finished_at: state.finished_at, reloads: state.reloads || 0,
             user_agent: navigator.userAgent, trials: state.trials };
  }

  function finish() {
    clear();
    app.appendChild(el("h1", null, "Thank you!"));
    app.appendChild(el("p", null, "You have finished the study. Please download your answers and send the " +
      "file to the experimenter."));
    var text = JSON.stringify(responses(), null, 2);
    var a = el("a", "button", "Download my answers (JSON)");
    a.id = "download";
    a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    a.download = "responses-" + DATA.study_id + "-p" + state.participant + ".json";
    var p = el("p"); p.appendChild(a); app.appendChild(p);
    var status = el("p", "hint"); status.id = "post-status";
    app.appendChild(status);
    if (DATA.post_url) {
      if (state.posted) {
        status.textContent = "Your answers were sent.";
      } else {
        status.textContent = "Sending your answers\u2026";
        window.fetch(DATA.post_url, { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: text, credentials: "omit", referrerPolicy: "no-referrer" })
          .then(function (r) {
            if (!r.ok) { throw new Error("HTTP " + r.status); }
            state.posted = true; save();
            status.textContent = "Your answers were sent.";
          })
          .catch(function () {
            status.textContent = "Sending failed: please download the file and send it instead.";
          });
      }
    }
    var again = el("button", "secondary", "Start a new session (next participant)");
    again.type = "button"; again.id = "restart";
    again.addEventListener("click", function () {
      if (window.confirm("Start over for a new participant? Download these answers first.")) {
        try { window.localStorage.removeItem(KEY); } catch (e) { /* ignore */ }
        state = null; welcome();
      }
    });
    app.appendChild(el("p")).appendChild(again);
    a.focus();
    say("Finished. Download your answers.");
  }

  var saved = load();
  if (saved && saved.study_id === DATA.study_id && saved.participant >= 1 &&
      saved.participant <= DATA.participants.length && Array.isArray(saved.trials)) {
    state = saved;
    document.title = DATA.title;
    if (state.done) { finish(); }
    else { state.reloads = (state.reloads || 0) + 1; state.resumed = true; save(); showTrial(); }
  } else {
    welcome();
  }
})();
"""
