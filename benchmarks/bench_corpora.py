"""GRID discovery: how long listing a full-size tree takes, and what the seen-speaker split gives.

    python benchmarks/bench_corpora.py --out benchmarks/results/

- The 127 GRID fixture clips (``../shared/fixtures/grid``, Zenodo layout): discovery time (fastest of
  ``--repeats``), and the ``seen`` protocol's train / val / test counts.
- A synthetic full-size tree in the original site's layout (``sN/video/mpg_6000/*.mpg`` and
  ``sN/align/*.align``): 33 speakers (s1..s34 without s21) x 1,000 distinct GRID sentences, each with
  its alignment file (six words with silences, CRLF, as the corpus writes them) and an empty video
  file, built in a temporary folder. Discovery reads and checks every alignment; the figures are its
  wall and CPU time (fastest of ``--repeats``), per clip too, and the seen split's shares of the 33,000
  ids (each id's part is a hash of the id alone: 80 / 10 / 10% expected).

Discovery has no speed target and no other tool lists GRID offline here, so there is no ratio. Writes
DIR/corpora.json with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

CLIPS_PER_SPEAKER = 1000


def build_tree(root: Path, per_speaker: int, seed: int = 0) -> int:
    """The original-site layout with ``per_speaker`` sentences per speaker; returns the clip count."""
    from talkface.prepare.corpora.grid import GRAMMAR, SPEAKER_WITHOUT_VIDEO, SPEAKERS, encode_sentence

    rng = random.Random(seed)
    sentences = [list(words) for words in itertools.product(*(t.values() for t in GRAMMAR))]
    n = 0
    for speaker in SPEAKERS:
        if speaker == SPEAKER_WITHOUT_VIDEO:
            continue
        video_dir, align_dir = root / speaker / "video" / "mpg_6000", root / speaker / "align"
        video_dir.mkdir(parents=True)
        align_dir.mkdir(parents=True)
        for words in rng.sample(sentences, per_speaker):
            name = encode_sentence(words)
            times = [0, 23750] + [23750 + 6000 * (i + 1) for i in range(6)] + [74500]
            lines = [f"{times[0]} {times[1]} sil"]
            lines += [f"{times[i + 1]} {times[i + 2]} {w}" for i, w in enumerate(words)]
            lines.append(f"{times[7]} {times[8]} sil")
            (align_dir / f"{name}.align").write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
            (video_dir / f"{name}.mpg").touch()
            n += 1
    return n


def timed_discovery(root: Path, repeats: int) -> tuple[dict, object]:
    from talkface.prepare.corpora import get_recipe

    walls, cpus, found = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        found = get_recipe("grid").discover(root, split="seen")
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    n = len(found.clips)
    return ({"clips": n, "wall_s": round(min(walls), 4), "cpu_s": round(min(cpus), 4),
             "wall_ms_per_clip": round(1e3 * min(walls) / n, 4),
             "cpu_ms_per_clip": round(1e3 * min(cpus) / n, 4),
             "wall_s_all": [round(w, 4) for w in walls], "cpu_s_all": [round(c, 4) for c in cpus],
             "problems": len(found.problems)}, found)


def split_counts(found) -> dict:
    counts = {"train": 0, "val": 0, "test": 0}
    for clip in found.clips:
        counts[clip.split] = counts.get(clip.split, 0) + 1
    total = sum(counts.values())
    return {"counts": counts, "shares": {k: v / total for k, v in counts.items()}, "clips": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from timing import grid_fixtures, machine_facts, write_result

    from talkface import __version__

    grid = grid_fixtures()
    if grid is None:
        return 0
    load_start = [round(v, 2) for v in os.getloadavg()]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    fixtures, found = timed_discovery(grid, max(args.repeats, 5))
    fixtures["seen_split"] = split_counts(found)
    print("fixtures", fixtures, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "grid"
        b0 = time.perf_counter()
        n = build_tree(root, CLIPS_PER_SPEAKER)
        build_s = time.perf_counter() - b0
        synthetic, found = timed_discovery(root, args.repeats)
    synthetic.update(layout="original site (sN/video/mpg_6000, sN/align)", speakers=33,
                     clips_per_speaker=CLIPS_PER_SPEAKER, clips_built=n, build_s=round(build_s, 1),
                     video_files="empty", seen_split=split_counts(found))
    print("synthetic", synthetic, flush=True)
    record = {
        "benchmark": "corpora",
        "talkface_version": __version__,
        "date": started,
        "machine": machine_facts(),
        "nice": os.nice(0),
        "load_average_before": load_start,
        "timing": f"fastest of {args.repeats} discoveries (5 on the fixtures) in one process, wall and CPU",
        "fixtures": fixtures,
        "synthetic_full_size": synthetic,
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    write_result(args.out, "corpora.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
