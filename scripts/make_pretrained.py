"""Make the model that ships with talkface (``talkface/data/pretrained``), by the documented recipe.

    python scripts/make_pretrained.py --budget 45m            # the shipped model (2-core CPU, about 1 h)
    python scripts/make_pretrained.py --steps lm=60,blink=40,tex=40 --out /tmp/pretrained   # a trial

1. Prepare every GRID speaker of the fixtures (``../shared/fixtures``: s1, s2, s23 in the normal layout,
   s4 in the high-quality layout) into one dataset with the committed ``seen`` protocol (a seeded hash
   of each clip id: 80% train, 10% val, 10% test). The 12 clips of ``make demo`` are left out, so the
   demo scores the shipped model on clips it never trained on.
2. Train with the one-command recipe (``talkface train pipeline``) within ``--budget`` (or ``--steps``),
   seed ``--seed``; its texture stage edits the warped identity with colour jitter 0.1 (the stage's
   defaults: the stage that animates faces it never saw).
3. Export the stages (:func:`talkface.train.export.export_stages`: the weights generation loads, in
   half precision) with ``model_index.json`` naming the command, data, seed, budget, each file's
   SHA-256 and the data licence.

The weights are trained on GRID (CC BY 4.0, Cooke et al., JASA 2006): keep the attribution with them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from talkface.utils.fixtures import fixtures_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = fixtures_dir()  # $TALKFACE_FIXTURES, else ../shared/fixtures
LICENCE = ("trained on GRID audio-visual corpus clips (CC BY 4.0): M. Cooke, J. Barker, S. Cunningham, "
           "X. Shao, JASA 120(5), 2006. The 68-point landmark model used to prepare them is dlib's "
           "(iBUG 300-W, non-commercial use).")


def talkface(*args: str) -> None:
    cmd = [sys.executable, "-m", "talkface.cli", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def without_demo_clips(corpus: Path, tree: Path) -> Path:
    """A tree of links to ``corpus`` (GRID's normal layout) without the demo's clips, so ``make demo``
    scores the shipped model on clips it never trained on."""
    demo = {p.stem for p in (ROOT / "talkface" / "data" / "demo" / "grid").glob("s*/*.mpg")}
    for source in sorted(corpus.rglob("*")):
        if source.is_dir() or source.stem in demo:
            continue
        link = tree / source.relative_to(corpus)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(source.resolve())
    return tree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="45m")
    ap.add_argument("--steps", default=None, help="instead of --budget: steps per stage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/talkface_make_pretrained"))
    ap.add_argument("--out", type=Path, default=ROOT / "talkface" / "data" / "pretrained")
    args = ap.parse_args(argv)
    data, runs = args.work / "data", args.work / "runs"
    common = ["--protocol", "seen", "--out", str(data), "-j", "2"]
    talkface("prepare", "grid", str(without_demo_clips(FIXTURES / "grid", args.work / "grid")), *common)
    talkface("prepare", "grid", str(FIXTURES / "grid_hq"), *common)
    schedule = ["--steps", args.steps] if args.steps else ["--budget", args.budget]
    # the texture stage's defaults: it edits the warped identity, colour jitter 0.1
    talkface("train", "pipeline", "--data", str(data), "--out", str(runs), "--seed", str(args.seed),
             *schedule)
    from talkface.store.dataset import Dataset
    from talkface.train.export import export_stages

    ds = Dataset.open(data)
    usable = ds.records(usable_only=True)
    speakers = sorted({r.speaker for r in usable})
    given = argv if argv is not None else sys.argv[1:]
    index = export_stages(runs, args.out, {
        "command": " ".join(["python scripts/make_pretrained.py", *given]),
        "trained_on": f"GRID speakers {', '.join(speakers)} (the fixtures' {len(usable)} usable clips; the "
                      "12 demo clips left out; protocol seen: its train part)",
        "seed": args.seed, "budget": args.budget if not args.steps else None, "steps": args.steps,
        "licence": LICENCE})
    total = sum(c["bytes"] for c in index["components"].values())
    print(f"wrote {args.out}: {total / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
