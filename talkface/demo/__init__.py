"""``talkface demo``: prepare, train, generate, baselines, evaluate, leaderboard, study and a comparison
video on 12 built-in real GRID clips (docs/demo.md)."""
