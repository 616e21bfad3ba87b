"""DeepSpeech v0.1.0 backend: graph reading, the PyTorch model against a NumPy forward, inputs, windows.

No DeepSpeech weights can be downloaded here, so each test writes its own ``output_graph.pb``: a GraphDef
with v0.1.0's node names, ops and layouts, random weights and small sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import python_speech_features as psf
import torch
from needs import missing
from tensorboard.compat.proto import graph_pb2, tensor_pb2, types_pb2

from talkface.core.features import get_feature_backend
from talkface.core.features.deepspeech import DeepSpeechModelError, audio_to_inputs, load_weights

torch.set_num_threads(1)

# Deliberately all different, so a transposed or swapped matrix cannot pass the shape checks.
N1, N2, N3, N_CELL, N5 = 24, 20, 16, 8, 12
LSTM = "bidirectional_rnn/{}/basic_lstm_cell/{}"


# --------------------------------------------------------------------------- a v0.1.0-style GraphDef


def random_weights(seed: int = 0, n_cell: int = N_CELL) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def w(*shape: int, std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    n3 = N3
    return {
        # h1 large enough that the clip at 20 and the ReLU at 0 are both exercised.
        "h1": w(494, N1, std=1.0), "b1": w(N1, std=1.0),
        "h2": w(N1, N2, std=0.1), "b2": w(N2, std=0.5),
        "h3": w(N2, n3, std=0.1), "b3": w(n3, std=0.5),
        LSTM.format("fw", "kernel"): w(n3 + n_cell, 4 * n_cell, std=0.3),
        LSTM.format("fw", "bias"): w(4 * n_cell, std=0.5),
        LSTM.format("bw", "kernel"): w(n3 + n_cell, 4 * n_cell, std=0.3),
        LSTM.format("bw", "bias"): w(4 * n_cell, std=0.5),
        "h5": w(2 * n_cell, N5, std=1.0), "b5": w(N5, std=0.5),
        "h6": w(N5, 29, std=0.5), "b6": w(29, std=0.5),
    }


def _const(graph, name: str, value: np.ndarray, as_list: bool = False) -> None:
    node = graph.node.add(name=name, op="Const")
    node.attr["dtype"].type = types_pb2.DT_FLOAT
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in value.shape:
        tensor.tensor_shape.dim.add(size=size)
    if as_list:
        tensor.float_val.extend(value.reshape(-1).tolist())
    else:
        tensor.tensor_content = value.astype("<f4").tobytes()
    node.attr["value"].tensor.CopyFrom(tensor)
    graph.node.add(name=f"{name}/read", op="Identity", input=[name])


def _op(graph, name: str, op: str, *inputs: str) -> str:
    graph.node.add(name=name, op=op, input=list(inputs))
    return name


def write_graph(path: Path, weights: dict[str, np.ndarray], skip: str = "") -> Path:
    """A frozen graph as v0.1.0's export writes it: placeholders, frozen Consts, the BiRNN ops, logits."""
    graph = graph_pb2.GraphDef()
    graph.node.add(name="input_node", op="Placeholder").attr["dtype"].type = types_pb2.DT_FLOAT
    graph.node.add(name="input_lengths", op="Placeholder").attr["dtype"].type = types_pb2.DT_INT32
    _const(graph, "Minimum/y", np.array(20.0, np.float32), as_list=True)  # an unrelated scalar Const
    for name, value in weights.items():
        if name != skip:
            _const(graph, name, value, as_list=(name == "b6"))  # b6 via float_val, the rest raw bytes
    x = _op(graph, "Reshape", "Reshape", "input_node")
    for k in ("1", "2", "3"):
        x = _op(graph, f"MatMul_{k}", "MatMul", x, f"h{k}/read")
        x = _op(graph, f"Add_{k}", "Add", x, f"b{k}/read")
        x = _op(graph, f"Relu_{k}", "Relu", x)
        x = _op(graph, f"Minimum_{k}", "Minimum", x, "Minimum/y")
    for d in ("fw", "bw"):
        _op(graph, f"bidirectional_rnn/{d}/{d}/while/basic_lstm_cell/MatMul", "MatMul", x,
            LSTM.format(d, "kernel") + "/read")
    x = _op(graph, "concat", "ConcatV2", "bidirectional_rnn/fw/fw/while/basic_lstm_cell/MatMul",
            "bidirectional_rnn/bw/bw/while/basic_lstm_cell/MatMul")
    x = _op(graph, "MatMul_5", "MatMul", x, "h5/read")
    x = _op(graph, "MatMul_6", "MatMul", x, "h6/read")
    _op(graph, "logits", "Reshape", _op(graph, "Add_6", "Add", x, "b6/read"))
    path.write_bytes(graph.SerializeToString())
    return path


# --------------------------------------------------------------------------- independent references


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def numpy_forward(
    inputs: np.ndarray, w: dict[str, np.ndarray], gates: str = "ijfo", forget_bias: float = 1.0
) -> np.ndarray:
    """DeepSpeech.py's BiRNN, literally, in float64. ``gates`` names the kernel's column blocks in order."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = inputs.astype(np.float64)
    for k in ("1", "2", "3"):
        x = np.minimum(np.maximum(x @ w[f"h{k}"] + w[f"b{k}"], 0.0), 20.0)

    def run_cell(seq: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
        n = bias.shape[0] // 4
        h, c, outs = np.zeros(n), np.zeros(n), []
        for x_t in seq:
            z = np.concatenate([x_t, h]) @ kernel + bias
            block = {g: z[k * n : (k + 1) * n] for k, g in enumerate(gates)}
            c = c * _sigmoid(block["f"] + forget_bias) + _sigmoid(block["i"]) * np.tanh(block["j"])
            h = np.tanh(c) * _sigmoid(block["o"])
            outs.append(h)
        return np.stack(outs)

    fw = run_cell(x, w[LSTM.format("fw", "kernel")], w[LSTM.format("fw", "bias")])
    bw = run_cell(x[::-1], w[LSTM.format("bw", "kernel")], w[LSTM.format("bw", "bias")])[::-1]
    x = np.minimum(np.maximum(np.concatenate([fw, bw], axis=1) @ w["h5"] + w["b5"], 0.0), 20.0)
    return x @ w["h6"] + w["b6"]


def reference_inputs(audio_int16: np.ndarray) -> np.ndarray:
    """v0.1.0's input vector as the older DeepSpeech loop: explicit MFCC settings, per-step context."""
    feats = psf.mfcc(audio_int16, samplerate=16000, winlen=0.025, winstep=0.01, numcep=26, nfilt=26,
                     nfft=512, lowfreq=0, highfreq=None, preemph=0.97, ceplifter=22, appendEnergy=True)
    feats = feats[::2]
    rows = []
    for t in range(len(feats)):
        frames = [feats[s] if 0 <= s < len(feats) else np.zeros(26) for s in range(t - 9, t + 10)]
        rows.append(np.concatenate(frames))
    rows = np.array(rows)
    return (rows - rows.mean()) / rows.std()


def voca_windows(logits: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """VOCA's interpolate_features + window loop (zero pad 8 each side, windows of 16)."""
    src_t = np.arange(len(logits)) / 50.0
    dst_t = np.arange(n_frames) / fps
    per_frame = np.stack([np.interp(dst_t, src_t, logits[:, j]) for j in range(logits.shape[1])], axis=1)
    pad = np.zeros((8, logits.shape[1]))
    padded = np.concatenate([pad, per_frame, pad])
    return np.array([padded[i : i + 16] for i in range(0, len(padded) - 16)])


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def speechlike(seconds: float, seed: int = 1) -> np.ndarray:
    """Voiced-like audio in [-1, 1] on the int16 grid: harmonics with a moving pitch, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t))
    x = 0.3 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(len(t))
    return (np.round(x * 32768) / 32768).astype(np.float32)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return random_weights()


@pytest.fixture(scope="module")
def graph_path(tmp_path_factory, weights) -> Path:
    return write_graph(tmp_path_factory.mktemp("ds") / "output_graph.pb", weights)


@pytest.fixture(scope="module")
def backend(graph_path):
    return get_feature_backend("deepspeech", model_path=graph_path, device="cpu", batch_size=4)


# --------------------------------------------------------------------------- tests


def test_loader_reads_every_tensor_exactly(graph_path, weights):
    loaded = load_weights(graph_path)
    assert loaded.n_cell == N_CELL and loaded.n_hidden == (N1, N2, N3, N5)
    for name in ("h1", "b1", "h2", "b2", "h3", "b3", "h5", "b5", "h6", "b6"):
        np.testing.assert_array_equal(loaded.dense[name], weights[name])
    for d in ("fw", "bw"):
        np.testing.assert_array_equal(loaded.lstm[d].kernel, weights[LSTM.format(d, "kernel")])
        np.testing.assert_array_equal(loaded.lstm[d].bias, weights[LSTM.format(d, "bias")])


def test_logits_match_numpy_forward(backend, weights):
    inputs = audio_to_inputs(speechlike(1.3))
    ref = numpy_forward(inputs, weights)
    first = np.minimum(np.maximum(inputs.astype(np.float64) @ weights["h1"] + weights["b1"], 0), 20)
    assert (first == 20).any() and (first == 0).any(), "the test must exercise both ends of the clipped ReLU"
    with torch.inference_mode():
        got = backend.model(torch.from_numpy(inputs)[None])[0].numpy()
    assert got.dtype == np.float32 and got.shape == (len(inputs), 29)
    assert rel_err(got, ref) < 1e-5


def test_gate_order_and_forget_bias_matter(backend, weights):
    """The reference agrees only with TF's i, j, f, o order and forget bias 1: a permuted load would fail."""
    inputs = audio_to_inputs(speechlike(0.6, seed=3))
    with torch.inference_mode():
        got = backend.model(torch.from_numpy(inputs)[None])[0].numpy()
    assert rel_err(got, numpy_forward(inputs, weights)) < 1e-5
    for wrong in ("fjio", "iofj", "jifo"):  # i<->f, j<->o, i<->j
        assert rel_err(got, numpy_forward(inputs, weights, gates=wrong)) > 1e-2, wrong
    assert rel_err(got, numpy_forward(inputs, weights, forget_bias=0.0)) > 1e-2


def test_legacy_weights_biases_names(tmp_path, weights):
    """TensorFlow < 1.2 exported the LSTM as .../weights and .../biases; both spellings load."""
    legacy = {k.replace("/kernel", "/weights").replace("/bias", "/biases"): v for k, v in weights.items()}
    loaded = load_weights(write_graph(tmp_path / "g.pb", legacy))
    np.testing.assert_array_equal(loaded.lstm["bw"].kernel, weights[LSTM.format("bw", "kernel")])


def test_scoped_graph_loads(tmp_path, weights):
    """A graph re-exported under a name scope ("deepspeech/h1", ...) loads the same tensors."""
    loaded = load_weights(write_graph(tmp_path / "g.pb", {f"deepspeech/{k}": v for k, v in weights.items()}))
    np.testing.assert_array_equal(loaded.dense["h3"], weights["h3"])
    np.testing.assert_array_equal(loaded.lstm["fw"].bias, weights[LSTM.format("fw", "bias")])


def test_inputs_match_deepspeech_loop():
    audio = speechlike(0.83, seed=5)
    got = audio_to_inputs(audio)
    ref = reference_inputs((audio.astype(np.float64) * 32768).astype(np.int16))
    assert got.shape == (int(np.ceil(len(psf.mfcc(audio * 32768, 16000, numcep=26)) / 2)), 494)
    assert got.shape == ref.shape and rel_err(got, ref) < 1e-5


def test_end_to_end_matches_voca_recipe(backend, weights):
    audio = speechlike(1.1, seed=7)
    logits = numpy_forward(reference_inputs((audio.astype(np.float64) * 32768).astype(np.int16)), weights)
    for n_frames, fps in ((27, 25.0), (33, 29.97)):
        got = backend.compute(audio, n_frames=n_frames, fps=fps)
        assert got.shape == (n_frames, 16, 29) and got.dtype == np.float32
        assert rel_err(got, voca_windows(logits, n_frames, fps)) < 1e-5


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_ramp_lands_on_the_right_frames(backend, fps, monkeypatch):
    """Logits that equal their step index i (time i/50 s): frame k must hold k*50/fps, window k-8..k+7."""
    steps, n_frames = 60, 40
    ramp = np.repeat(np.arange(steps, dtype=np.float32)[:, None], 29, axis=1)
    monkeypatch.setattr(backend, "logits_batch", lambda audios: [ramp for _ in audios])
    got = backend.compute(np.zeros(16000, np.float32), n_frames=n_frames, fps=fps)
    assert got.shape == (n_frames, 16, 29)
    for k in range(n_frames):
        for w in range(16):
            src = k + w - 8
            want = 0.0 if not 0 <= src < n_frames else min(src * 50.0 / fps, steps - 1)
            assert got[k, w, 0] == pytest.approx(want, abs=1e-4), (k, w)
    if fps == 25.0:
        assert got[10, 8, 3] == 20.0  # frame 10 is at 0.4 s = step 20 exactly


def test_batched_equals_unbatched(backend):
    audios = [speechlike(s, seed=i) for i, s in enumerate((0.5, 1.4, 0.9, 0.31, 1.0))]
    frames = [13, 35, 23, 8, 25]
    batched = backend.compute_batch(audios, frames, [25.0] * 5)  # batch_size 4: padding and packing
    for audio, n, got in zip(audios, frames, batched, strict=True):
        alone = backend.compute(audio, n_frames=n, fps=25.0)
        assert got.shape == alone.shape == (n, 16, 29)
        np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-5 * np.abs(alone).max())


def test_batches_respect_clip_count_and_padded_seconds():
    """Hand-worked cut of five clips (lengths in 50 Hz steps, longest first) into forwards."""
    from types import SimpleNamespace

    from talkface.core.features.deepspeech.backend import DeepSpeechBackend

    lengths, order = [100, 60, 50, 40, 30], [4, 0, 2, 1, 3]
    by_count = SimpleNamespace(batch_size=3, max_batch_seconds=1e9, rate=50.0)
    assert DeepSpeechBackend._batches(by_count, lengths, order) == [[4, 0, 2], [1, 3]]
    # 2 s = 100 steps: 100 alone; 60 + 50 would pad to 120; 50 + 40 pad to exactly 100; 30 joins none
    by_seconds = SimpleNamespace(batch_size=64, max_batch_seconds=2.0, rate=50.0)
    assert DeepSpeechBackend._batches(by_seconds, lengths, order) == [[4], [0], [2, 1], [3]]


def test_lstm_loop_equals_nn_lstm(backend, weights):
    """The CPU step loop and nn.LSTM (packed) agree, padding included, lengths unsorted; both match NumPy."""
    clips = [audio_to_inputs(speechlike(s, seed=9)) for s in (0.35, 0.7, 0.5)]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.zeros(3, int(lengths.max()), 494)
    for r, c in enumerate(clips):
        batch[r, : len(c)] = torch.from_numpy(c)
    model = backend.model
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            model.lstm_impl = "loop"
            loop = model(batch, lengths).numpy()
            model.lstm_impl = "torch"
            fused = model(batch, lengths).numpy()
    finally:
        model.lstm_impl = "auto"
    assert torch.get_num_threads() == threads  # the loop's one-thread blocks restore the count
    for r, c in enumerate(clips):
        ref = numpy_forward(c, weights)
        assert rel_err(loop[r, : len(c)], ref) < 1e-5
        assert rel_err(fused[r, : len(c)], ref) < 1e-5
    # Padded steps: both give the logits of a zero LSTM output, as pad_packed_sequence leaves it.
    np.testing.assert_allclose(loop, fused, rtol=1e-5, atol=1e-5 * np.abs(fused).max())


def test_lstm_loop_equals_packed_nn_lstm(backend):
    """The step loop (time-major, sorted, active rows only) equals packed nn.LSTM, padding zeroed."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    model = backend.model
    lengths = torch.tensor([5, 11, 8, 11])
    x = torch.randn(4, 11, model.lstm.input_size, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        want, _ = pad_packed_sequence(model.lstm(packed)[0], batch_first=True, total_length=11)
        order = torch.argsort(lengths, descending=True, stable=True)
        loop = model._bilstm_loop(x[order].transpose(0, 1).contiguous(), lengths[order])
        loop = loop.transpose(0, 1)[torch.argsort(order)]
    np.testing.assert_allclose(loop.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_settings_record_model_sha256(backend, graph_path):
    import hashlib

    settings = backend.settings()
    assert settings["model_sha256"] == hashlib.sha256(graph_path.read_bytes()).hexdigest()
    assert settings["backend"] == "deepspeech" and settings["dim"] == 29 and settings["rate"] == 50.0


# --------------------------------------------------------------------------- broken model files


def test_missing_path_says_where_to_get_the_model(tmp_path):
    with pytest.raises(DeepSpeechModelError, match=r"releases/tag/v0\.1\.0.*deepspeech-0\.1\.0-models"
                       r"\.tar\.gz.*models/output_graph\.pb"):
        get_feature_backend("deepspeech", model_path=tmp_path / "nope.pb")
    with pytest.raises(DeepSpeechModelError, match="output_graph.pb"):
        get_feature_backend("deepspeech")


@pytest.mark.parametrize("content", [b"\xff\xff\xff\xff garbage", b"just some text, not a graph\n"])
def test_not_a_graphdef(tmp_path, content):
    path = tmp_path / "bad.pb"
    path.write_bytes(content)
    with pytest.raises(DeepSpeechModelError, match="not a TensorFlow GraphDef"):
        load_weights(path)


def test_missing_node_is_named(tmp_path, weights):
    path = write_graph(tmp_path / "g.pb", weights, skip="h5")
    with pytest.raises(DeepSpeechModelError, match="node 'h5' not found"):
        load_weights(path)
    path = write_graph(tmp_path / "g2.pb", weights, skip=LSTM.format("bw", "bias"))
    with pytest.raises(DeepSpeechModelError, match="rnn/bw/basic_lstm_cell/bias' not found"):
        load_weights(path)


def test_wrong_shape_names_node_and_shapes(tmp_path, weights):
    bad = dict(weights, h2=np.zeros((N1 + 1, N2), np.float32))
    with pytest.raises(DeepSpeechModelError, match=r"node 'h2' has shape \[25, 20\], expected \[24, \?\]"):
        load_weights(write_graph(tmp_path / "g.pb", bad))
    bad = dict(weights, h6=np.zeros((N5, 28), np.float32))
    with pytest.raises(DeepSpeechModelError, match=r"node 'h6' has shape \[12, 28\], expected \[12, 29\]"):
        load_weights(write_graph(tmp_path / "g2.pb", bad))
    kernel = LSTM.format("bw", "kernel")
    bad = dict(weights, **{kernel: np.zeros((N3 + N_CELL, 4 * N_CELL + 4), np.float32)})
    want = r"basic_lstm_cell/kernel' has shape \[24, 36\], expected \[24, 32\]"
    with pytest.raises(DeepSpeechModelError, match=want):
        load_weights(write_graph(tmp_path / "g3.pb", bad))


# --------------------------------------------------------------------------- real GRID clips


def _grid_clips(n: int) -> list[Path]:
    from talkface.utils.fixtures import fixtures_dir

    clips = sorted((fixtures_dir() / "grid" / "s1").glob("*.mpg"))[:n]
    if not clips:
        missing(f"GRID fixtures not found under {fixtures_dir()}")
    return clips


def test_grid_clips_give_one_window_per_video_frame(backend):
    from talkface.core.media import iter_frames, probe_video, read_audio

    clips = _grid_clips(3)
    audios, frames, rates = [], [], []
    for clip in clips:
        audios.append(read_audio(clip, sr=16000))
        frames.append(sum(1 for _ in iter_frames(clip)))
        rates.append(probe_video(clip).fps)
    feats = backend.compute_batch(audios, frames, rates)
    for audio, n, fps, got in zip(audios, frames, rates, feats, strict=True):
        assert n == 75 and fps == pytest.approx(25.0)
        assert got.shape == (n, 16, 29) and np.isfinite(got).all()
        # The audio covers the video: the last frame's time is within the logits, not clamped past the end.
        n_steps = len(audio_to_inputs(audio))
        assert (n - 1) / fps <= (n_steps - 1) / 50.0
        assert (got[:, 8] != got[:, 8][-1]).any()
