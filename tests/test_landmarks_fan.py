"""The ``fan`` landmark backend: face-alignment's 2D-FAN in dlib's boxes, from a model file by path.

Most tests use small TorchScript models made here (heatmap peaks at known places, or at a marker
painted on the frame), so they check talkface's geometry on real fixture frames and real dlib boxes
without the real weights. The comparison with dlib needs the released 2D-FAN file: it runs when
``TALKFACE_FAN_MODEL`` names one or the fixtures hold one under ``reference/fan/``, and skips otherwise.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dlib
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from typer.testing import CliRunner

from talkface.cli import app
from talkface.core.alignment import load_template
from talkface.core.landmarks import get_landmark_backend
from talkface.core.landmarks.fan_backend import (
    FAN,
    FAN_VERSION,
    FanBackend,
    FanModelError,
    decode_heatmaps,
    load_fan,
)
from talkface.core.media import read_video
from talkface.store.dataset import BackendInfo, Dataset
from talkface.utils.fixtures import fixtures_dir

SIGMA = 1.5  # heatmap pixels


class FixedHeatmaps(nn.Module):
    """Returns the same 68 heatmaps for every crop of the batch (the input is only counted)."""

    def __init__(self, heatmaps: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("heatmaps", heatmaps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heatmaps.unsqueeze(0).expand(x.shape[0], -1, -1, -1).contiguous()


class GreenMarker(nn.Module):
    """Every heatmap is the crop's pure-green mass (G - R - B, 4x4 average): it points at a marker."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        green = torch.relu(x[:, 1] - x[:, 0] - x[:, 2]).unsqueeze(1)
        return F.avg_pool2d(green, 4).expand(-1, 68, -1, -1)


def gaussians(peaks: np.ndarray) -> torch.Tensor:
    """(68, 64, 64) heatmaps, pixel j's value exp(-(j - peak)^2 / 2 sigma^2) on each axis."""
    j = np.arange(64, dtype=np.float64)
    gx = np.exp(-((j[None, :] - peaks[:, :1]) ** 2) / (2 * SIGMA**2))  # (68, 64) over x
    gy = np.exp(-((j[None, :] - peaks[:, 1:]) ** 2) / (2 * SIGMA**2))  # (68, 64) over y
    return torch.from_numpy(gy[:, :, None] * gx[:, None, :]).float()


def _save(module: nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


#: Known heatmap positions (x, y) in heatmap pixels (pixel centres at integers): off-grid on both sides
#: of a pixel, exactly on one (no shift), and on the border (no neighbour: no shift on that axis).
PEAKS = np.random.default_rng(7).uniform(3, 60, (68, 2))
PEAKS[0] = (20.3, 41.8)
PEAKS[1] = (30.0, 12.0)
PEAKS[2] = (0.0, 33.4)
PEAKS[3] = (63.0, 63.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fan_models")
    template = load_template(64).astype(np.float64)  # a face's 68 points in a 64 px square
    face = 32 + (template - 32) * 0.55 - 0.5  # the face in the middle of the crop, as a FAN sees it
    garbage = d / "garbage.pth.tar"
    garbage.write_bytes(b"this is not a model file" * 100)
    return {
        "peaks": _save(FixedHeatmaps(gaussians(PEAKS)), d / "peaks.pt"),
        "face": _save(FixedHeatmaps(gaussians(face)), d / "face.pt"),
        "marker": _save(GreenMarker(), d / "marker.pt"),
        "garbage": garbage,
    }


@pytest.fixture(scope="module")
def frame(grid_root: Path) -> np.ndarray:
    return read_video(grid_root / "s1" / "bbaf2n.mpg")[40]


def dlib_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """dlib's HOG box for the frame's best face, straight from dlib."""
    boxes, scores, _ = dlib.get_frontal_face_detector().run(image, 0, 0)
    best = boxes[int(np.argmax(scores))]
    return best.left(), best.top(), best.right(), best.bottom()


def by_hand(peaks: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """face-alignment's convention written out: crop centre = box centre moved up 0.12 box heights,
    crop side = 200 (w + h) / 195; heatmap pixel j (+- a quarter toward the larger neighbour) covers
    crop side / 64 image pixels starting at (j + 0.25 +- 0.25) of them; pixel-centre image coordinates."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    cx, cy = (left + right) / 2, (top + bottom) / 2 - 0.12 * h
    side = 200 * (w + h) / 195
    j = np.rint(peaks)
    shift = 0.25 * np.sign(peaks - j) * ((j > 0) & (j < 63))
    return np.stack([cx - side / 2 + (j[:, 0] + 0.5 + shift[:, 0]) * side / 64,
                     cy - side / 2 + (j[:, 1] + 0.5 + shift[:, 1]) * side / 64], axis=1)


def test_points_are_the_inverse_crop_of_the_heatmap_peaks(models: dict[str, Path], frame: np.ndarray) -> None:
    backend = get_landmark_backend("fan", model_path=str(models["peaks"]))
    box = dlib_box(frame)
    assert backend.face_box(frame) == box  # FAN is given dlib's own box
    points = backend.detect(frame)
    expected = by_hand(PEAKS, box)
    np.testing.assert_allclose(points, expected, atol=1e-3)
    # GRID s1 bbaf2n frame 40: box (93, 120)-(217, 245), crop side 255.4 px centred at (155, 167.5);
    # peak 0 at (20.3, 41.8) is pixel (20, 42) shifted a quarter right and up: (20.75, 42.25) + 0.5
    assert box == (93, 120, 217, 245)
    np.testing.assert_allclose(points[0], [155 - 127.692 + 20.75 * 3.99038,
                                           167.5 - 127.692 + 42.25 * 3.99038], atol=0.005)
    # the same box through the batched entry point, twice in one batch
    twice = backend.landmarks_in_boxes([frame, frame], [box, box])
    np.testing.assert_allclose(twice, np.stack([expected, expected]), atol=1e-3)


def test_quarter_pixel_shift_toward_the_larger_neighbour() -> None:
    hm = torch.zeros(1, 3, 64, 64)
    hm[0, 0, 10, 20], hm[0, 0, 10, 21], hm[0, 0, 9, 20] = 1.0, 0.5, 0.2  # right and up
    hm[0, 1, 30, 40] = 1.0  # a lone peak: no shift
    hm[0, 2, 0, 63], hm[0, 2, 1, 63] = 1.0, 0.9  # corner: no neighbour on either side of it
    got = decode_heatmaps(hm)[0].numpy()
    np.testing.assert_allclose(got, [[20.75, 10.25], [40.5, 30.5], [63.5, 0.5]])


def test_a_marker_on_a_real_frame_comes_back_where_it_was_painted(models: dict[str, Path],
                                                                  frame: np.ndarray) -> None:
    """Crop and inverse crop agree: the decoded point is the marker's place, within the heatmap grid's
    resolution (a quarter-shifted arg-max is at most half a heatmap pixel off, side / 128 image px)."""
    backend = get_landmark_backend("fan", model_path=str(models["marker"]))
    box = dlib_box(frame)
    side = 200 * (box[2] - box[0] + box[3] - box[1]) / 195
    errors = []
    for x, y in ((171, 151), (130, 140), (190, 230), (156, 200), (110, 100)):
        marked = frame.copy()
        marked[y - 1:y + 2, x - 1:x + 2] = (0, 255, 0)
        got = backend.landmarks_in_boxes([marked], [box])[0]
        assert np.ptp(got, axis=0).max() == 0  # all 68 heatmaps are the same here
        errors.append(float(np.linalg.norm(got[0] - (x, y))))
    # measured 1.06, 0.57, 0.65, 0.42, 0.67 px (side 255 px: one heatmap pixel is 4 image pixels)
    assert max(errors) < side / 128 + 0.5, errors


def test_the_dataset_records_backend_version_and_weights(models: dict[str, Path], grid_root: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["prepare", "grid", str(grid_root), "--speakers", "s1", "--limit", "1",
                                      "--out", str(out), "--landmarks", "fan",
                                      "--fan-model", str(models["face"])])
    assert result.exit_code == 0, result.output
    ds = Dataset.open(out)
    sha = hashlib.sha256(models["face"].read_bytes()).hexdigest()
    assert ds.info.landmark_backend == BackendInfo(name="fan", version=FAN_VERSION, model_sha256={"fan": sha})
    assert ds.info.settings["landmark_backend"] == "fan"
    assert "model_path" not in ds.info.settings["landmark_options"]  # the file is named by its checksum
    manifest = ds.manifest()
    assert manifest.landmark_backend.tolist() == ["fan"] and manifest.status.tolist() == ["ok"]


def _normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("case", ["garbage", "missing", "not_given", "wrong_backend", "unknown_backend"])
def test_a_missing_or_unloadable_model_is_exit_2_with_one_sentence(models: dict[str, Path], grid_root: Path,
                                                                     tmp_path: Path, case: str) -> None:
    args = ["prepare", "grid", str(grid_root), "--speakers", "s1", "--limit", "1",
            "--out", str(tmp_path / "o")]
    fan = {"garbage": ["--landmarks", "fan", "--fan-model", str(models["garbage"])],
           "missing": ["--landmarks", "fan", "--fan-model", str(tmp_path / "2DFAN4.zip")],
           "not_given": ["--landmarks", "fan"],
           "wrong_backend": ["--fan-model", str(models["peaks"])],
           "unknown_backend": ["--landmarks", "mediapipe"]}[case]
    result = CliRunner().invoke(app, args + fan)
    assert result.exit_code == 2, result.output
    said = _normalised(result.output)
    if case in ("wrong_backend", "unknown_backend"):
        assert {"wrong_backend": "--fan-model needs --landmarks fan",
                "unknown_backend": "choose one of dlib, fan"}[case] in said
        return
    what = {"garbage": "could not be loaded", "missing": "does not exist", "not_given": "needs"}[case]
    assert what in said and "2DFAN4-cd938726ad.zip" in said
    assert "adrianbulat.com/downloads/python-fan/" in said
    with pytest.raises(FanModelError) as err:
        load_fan({"garbage": models["garbage"], "missing": tmp_path / "2DFAN4.zip", "not_given": None}[case])
    message = str(err.value)
    assert message.endswith(".") and ". " not in message, message  # one sentence


def test_a_model_with_the_wrong_output_is_refused(tmp_path: Path) -> None:
    wrong = _save(FixedHeatmaps(torch.zeros(5, 32, 32)), tmp_path / "wrong.pt")
    with pytest.raises(FanModelError, match=r"outputs \(5, 32, 32\), not 68 heatmaps"):
        load_fan(wrong)


def test_the_state_dict_release_loads_into_the_network_written_here(tmp_path: Path) -> None:
    """face-alignment 1.5 ships 2DFAN4-11f355bf06.pth.tar, a state dict: it loads (strictly) into
    ``FAN``. (FAN(4) with face-alignment's own module and the same random weights gave equal heatmaps,
    max difference 0.0: checked once with its models/fan.py, which the tests do not import.)"""
    torch.manual_seed(0)
    net = FAN(stacks=1)
    path = tmp_path / "2DFAN1-random.pth.tar"
    torch.save(net.state_dict(), path)
    loaded, fmt = load_fan(path)
    assert fmt == "state_dict" and isinstance(loaded, FAN) and loaded.stacks == 1
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    broken = {k: v for k, v in net.state_dict().items() if not k.startswith("top_m_0.")}
    torch.save(broken, tmp_path / "broken.pth.tar")
    with pytest.raises(FanModelError, match="could not be loaded"):
        load_fan(tmp_path / "broken.pth.tar")


@pytest.mark.parametrize(
    "image",
    [np.zeros((200, 240, 3), np.uint8),
     np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8)],
    ids=["black", "noise"],
)
def test_no_face_gives_no_landmarks(models: dict[str, Path], image: np.ndarray) -> None:
    backend = get_landmark_backend("fan", model_path=str(models["peaks"]))
    assert backend.detect(image) is None
    track = backend.track(iter([image, image, image]))
    assert not track.face_found.any() and np.isnan(track.points).all() and track.points.shape == (3, 68, 2)


def test_track_matches_detect_and_marks_the_faceless_frames(models: dict[str, Path], grid_root: Path) -> None:
    backend = FanBackend(model_path=str(models["peaks"]), batch_size=3)  # batches split mid-run
    clip = read_video(grid_root / "s1" / "bbaf2n.mpg")
    frames = [clip[10], clip[11], np.zeros_like(clip[12]), clip[13], clip[14], clip[15], clip[16]]
    track = backend.track(iter(frames))
    assert track.face_found.tolist() == [True, True, False, True, True, True, True] and track.detected.all()
    for i, image in enumerate(frames):
        if track.face_found[i]:
            np.testing.assert_allclose(track.points[i], by_hand(PEAKS, dlib_box(image)), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# With the real weights


def _real_fan_model() -> Path | None:
    env = os.environ.get("TALKFACE_FAN_MODEL")
    if env:
        return Path(env)
    folder = fixtures_dir() / "reference" / "fan"
    found = sorted(folder.glob("2DFAN4*")) if folder.is_dir() else []
    return found[0] if found else None


@pytest.fixture(scope="module")
def real_fan() -> FanBackend:
    path = _real_fan_model()
    if path is None:
        pytest.skip("no 2D-FAN weights here: set TALKFACE_FAN_MODEL to 2DFAN4-cd938726ad.zip or "
                    "2DFAN4-11f355bf06.pth.tar, or put one under the fixtures' reference/fan/")
    return FanBackend(model_path=str(path))


def test_fan_agrees_with_dlib_on_fixture_frames(real_fan: FanBackend, grid_root: Path,
                                                voxceleb_root: Path) -> None:
    """Mean distance between FAN's and dlib's 68 points, as a share of the eye-centre distance.

    Both follow the 300-W 68-point scheme; each is off the human annotation by about 3-6% of the
    inter-ocular distance on 300-W (FAN's paper; Kazemi and Sullivan's ERT), and the two disagree most
    on the jaw line, which they draw differently (the inter-ocular distance itself is about 47 px on
    GRID's 360x288 frames, a face about 128 px tall). Two independent errors of that size give about
    6-8%: the bound is 8.5% (4 px on GRID) on average, 12% on any frame.
    """
    dlib_backend = get_landmark_backend("dlib")
    frames = [read_video(grid_root / "s1" / name)[40] for name in ("bbaf2n.mpg", "bwat2n.mpg", "lbbe1s.mpg")]
    vox = read_video(voxceleb_root / "00098.mp4")
    frames += [vox[10], vox[130]]
    shares = []
    for image in frames:
        a, b = real_fan.detect(image), dlib_backend.detect(image)
        assert a is not None and b is not None
        iod = float(np.linalg.norm(b[36:42].mean(0) - b[42:48].mean(0)))
        shares.append(float(np.linalg.norm(a - b, axis=1).mean()) / iod)
    assert np.mean(shares) < 0.085 and max(shares) < 0.12, shares
