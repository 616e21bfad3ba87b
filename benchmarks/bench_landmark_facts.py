"""The dlib backend's facts that docs/landmarks.md quotes, measured on the fixtures.

    python benchmarks/bench_landmark_facts.py --out benchmarks/results/

One pass of the default ``dlib`` tracker over every GRID fixture clip (s1, s2, s23) and the two
VoxCeleb-style clips gives:

* ``plausibility``: the range of each measure of ``face_frame_measures`` (the face's own frame, unit =
  the distance between the eye centres) over every frame with a face, and how many frames
  ``implausible_frames`` rejects, per reason;
* ``s1_alignment``: the s1 clips smoothed and aligned as prepare does (128 px crops): the outer-eye
  distance against the template's (per-clip maximum of the relative difference), and the jitter in the
  initial silence (mean frame-to-frame motion of the aligned points, ``sil`` from the alignment file,
  minus 2 frames) before and after smoothing, as ``tests/test_landmarks_dlib.py`` measures them;
* ``predictions``: 68-point predictions per frame (the batched predictor's boxes, detections
  included), with the default box hysteresis and without it (``box_hysteresis=0``), on the first
  ``--clips`` s1 clips and the VoxCeleb-style clips.

Then ``rotated_clip``: s1 ``bbaf2n`` (75 frames) written losslessly upright and stored turned with a
display matrix undoing it (as ``tests/test_media.py`` does), tracked against the upright copy; and
``model_files``: the 68-point model's parse from dlib's ``.dat`` against a load from talkface's NumPy
cache (in a fresh temporary cache folder), and dlib's HOG detector built from its embedded copy against
a load of the saved one. Writes DIR/landmark_facts.json with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _initial_silence_frames(align_file: Path, fps: float = 25.0) -> int:
    """Frames of the leading ``sil`` (alignment units: 1/25000 s), minus 2 for speech onset."""
    start, end, word = align_file.read_text().split()[:3]
    if word != "sil" or int(start) != 0:
        return 0
    return max(int(int(end) / 25000 * fps) - 2, 0)


def _retag(src: Path, dst: Path, rotation: float) -> None:
    """Re-mux ``src`` (no re-encode) into ``dst`` with a display matrix turning it ``rotation`` CCW."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        mapping = {}
        for stream in inp.streams:
            mapping[stream.index] = out.add_stream_from_template(stream)
            if stream.type == "video":
                mapping[stream.index].set_display_rotation(rotation)
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--clips", type=int, default=12, help="s1 clips for the predictions count")
    args = parser.parse_args(argv)

    import dlib
    import numpy as np
    from timing import machine_facts, write_result

    from talkface import __version__
    from talkface.core import media
    from talkface.core.alignment import align_landmarks, load_template
    from talkface.core.landmarks import dlib_shape, get_landmark_backend
    from talkface.core.landmarks.base import face_frame_measures, implausible_frames
    from talkface.core.landmarks.dlib_backend import DlibBackend
    from talkface.core.landmarks.dlib_models import dlib_model_path
    from talkface.core.landmarks.temporal import fill_gaps, smooth_landmarks
    from talkface.utils.fixtures import fixtures_dir

    grid = fixtures_dir() / "grid"
    vox = fixtures_dir() / "voxceleb_style"
    if not (grid / "s1").is_dir():
        print(f"skipped: GRID fixtures not found at {grid} (set TALKFACE_FIXTURES)")
        return 0
    load_start = [round(v, 2) for v in os.getloadavg()]
    t0, c0 = time.perf_counter(), time.process_time()

    counted = {"n": 0}

    def counting(backend: DlibBackend) -> DlibBackend:
        """Count the boxes the backend's (batched) 68-point predictor is asked for."""
        shapes = backend._shapes

        def count(frames, rects, *rest):  # type: ignore[no-untyped-def]
            counted["n"] += len(rects)
            return shapes(frames, rects, *rest)

        backend._shapes = count
        return backend

    def track(backend, path: Path):  # type: ignore[no-untyped-def]
        before = counted["n"]
        tr = backend.track(media.iter_frames(path, fps=25))
        return tr, counted["n"] - before

    backend = counting(get_landmark_backend("dlib"))  # type: ignore[arg-type]
    s1 = sorted((grid / "s1").glob("*.mpg"))
    others = sorted((grid / "s2").glob("*.mpg")) + sorted((grid / "s23").glob("*.mpg"))
    voxclips = sorted(vox.glob("*.mp4"))
    template = load_template(128)
    template_iod = float(np.linalg.norm(template[45] - template[36]))

    measures: dict[str, list[np.ndarray]] = {}
    rejected: dict[str, int] = {}
    frames_with_face = 0
    frames_total = 0
    iod_max, raw_jitter, smooth_jitter = [], [], []
    pred_default: dict[str, list[int]] = {"grid": [0, 0], "voxceleb_style": [0, 0]}
    for i, clip in enumerate(s1 + others + voxclips):
        tr, n_pred = track(backend, clip)
        frames_total += len(tr)
        kind = "voxceleb_style" if clip in voxclips else "grid"
        if kind == "voxceleb_style" or i < args.clips:
            pred_default[kind][0] += n_pred
            pred_default[kind][1] += len(tr)
        ok = tr.face_found & np.isfinite(tr.points).all(axis=(1, 2))
        frames_with_face += int(ok.sum())
        for key, v in face_frame_measures(tr.points[ok]).items():
            measures.setdefault(key, []).append(v)
        for reason, mask in implausible_frames(tr.points, tr.face_found).items():
            rejected[reason] = rejected.get(reason, 0) + int(mask.sum())
        if clip in s1:
            points = smooth_landmarks(fill_gaps(tr.points, tr.face_found, max_gap=5))
            _, aligned = align_landmarks(points, 128)
            good = ~np.isnan(aligned).any(axis=(1, 2))
            iod = np.linalg.norm(aligned[good, 45] - aligned[good, 36], axis=-1) / template_iod
            iod_max.append(float(np.abs(iod - 1).max()))
            n = _initial_silence_frames(grid / "alignments" / "s1" / f"{clip.stem}.align")
            _, raw_aligned = align_landmarks(tr.points, 128)
            for series, out in ((raw_aligned, raw_jitter), (aligned, smooth_jitter)):
                steps = np.linalg.norm(np.diff(series[:n], axis=0), axis=-1)
                if np.isfinite(steps).any():
                    out.append(float(np.nanmean(steps)))
        print(f"{clip.name}: {len(tr)} frames, {n_pred} predictions", flush=True)

    ranges = {k: [float(np.min(np.concatenate(v))), float(np.max(np.concatenate(v)))]
              for k, v in measures.items()}

    no_hyst = counting(get_landmark_backend("dlib", box_hysteresis=0))  # type: ignore[arg-type]
    pred_zero: dict[str, list[int]] = {"grid": [0, 0], "voxceleb_style": [0, 0]}
    for clip in s1[:args.clips] + voxclips:
        tr, n_pred = track(no_hyst, clip)
        kind = "voxceleb_style" if clip in voxclips else "grid"
        pred_zero[kind][0] += n_pred
        pred_zero[kind][1] += len(tr)

    def per_frame(d: dict[str, list[int]]) -> dict[str, float]:
        return {k: round(p / f, 3) for k, (p, f) in d.items()}

    # a clip stored turned, with a display matrix undoing it
    src = s1[0]
    frames = media.read_video(src)
    audio = media.read_audio(src)
    rotated: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        reference = tmp_path / "reference.mp4"
        media.write_video(reference, frames, 25.0, audio, crf=0)
        ref = backend.track(media.iter_frames(reference))
        for quarter_turns in (1, 2, 3):
            stored = tmp_path / f"stored{quarter_turns}.mp4"
            media.write_video(stored, (np.rot90(f, -quarter_turns) for f in frames), 25.0, audio, crf=0)
            tagged = tmp_path / f"tagged{quarter_turns}.mp4"
            _retag(stored, tagged, 90.0 * quarter_turns)
            got = backend.track(media.iter_frames(tagged))
            err = np.linalg.norm(got.points - ref.points, axis=2)
            raw = backend.track(media.iter_frames(tagged, upright=False))
            rotated[str(90 * quarter_turns)] = {
                "frames_with_face": int(got.face_found.sum()),
                "mean_px": float(np.nanmean(err)), "max_px": float(np.nanmax(err)),
                "without_matrix_frames_with_face": int(raw.face_found.sum()),
                "without_matrix_rejected": {k: int(v) for k, v in dict(raw.rejected).items()},
            }

    # the model files: dlib's text formats against the saved copies
    c = time.process_time()
    dlib_shape.read_dlib_model(dlib_model_path("shape_68"))
    parse_cpu = time.process_time() - c
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = tmp
        try:
            import hashlib

            path = dlib_model_path("shape_68")
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            dlib_shape.load_model(path, digest)  # parses and writes the cache
            c, w = time.process_time(), time.perf_counter()
            model = dlib_shape.load_model(path, digest)
            cache_cpu, cache_wall = time.process_time() - c, time.perf_counter() - w
            leaf_mb = model.table.nbytes / 1e6
            c = time.process_time()
            detector = dlib.get_frontal_face_detector()
            hog_build_cpu = time.process_time() - c
            saved = Path(tmp) / "hog.svm"
            detector.save(str(saved))
            c = time.process_time()
            dlib.fhog_object_detector(str(saved))
            hog_load_cpu = time.process_time() - c
        finally:
            if old is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = old

    record = {
        "benchmark": "landmark_facts",
        "talkface_version": __version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "nice": os.nice(0),
        "load_average_before": load_start,
        "landmark_settings": {k: v for k, v in backend.settings().items() if not k.endswith("sha256")},
        "plausibility": {
            "clips": {"grid": len(s1) + len(others), "voxceleb_style": len(voxclips)},
            "frames": frames_total, "frames_with_face": frames_with_face,
            "ranges": ranges, "rejected_frames": rejected,
            "rejected_total": int(sum(rejected.values())),
        },
        "s1_alignment": {
            "clips": len(s1),
            "outer_eye_distance_vs_template_max": max(iod_max),
            "outer_eye_distance_vs_template_mean_of_clip_max": float(np.mean(iod_max)),
            "still_jitter_clips": len(smooth_jitter),
            "still_jitter_smoothed_mean_px": float(np.mean(smooth_jitter)),
            "still_jitter_smoothed_max_px": float(np.max(smooth_jitter)),
            "still_jitter_raw_mean_px": float(np.mean(raw_jitter)),
            "still_jitter_raw_max_px": float(np.max(raw_jitter)),
        },
        "predictions": {
            "grid_clips": min(args.clips, len(s1)), "voxceleb_style_clips": len(voxclips),
            "per_frame_default": per_frame(pred_default),
            "per_frame_without_hysteresis": per_frame(pred_zero),
        },
        "rotated_clip": {"clip": f"s1/{src.name}", "frames": len(frames), "by_rotation": rotated},
        "model_files": {
            "predictor_parse_cpu_s": round(parse_cpu, 2),
            "predictor_cache_load_cpu_ms": round(1e3 * cache_cpu, 1),
            "predictor_cache_load_wall_ms": round(1e3 * cache_wall, 1),
            "predictor_leaf_table_mb": round(leaf_mb, 1),
            "hog_build_cpu_s": round(hog_build_cpu, 3),
            "hog_saved_load_cpu_ms": round(1e3 * hog_load_cpu, 1),
        },
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    write_result(args.out, "landmark_facts.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
