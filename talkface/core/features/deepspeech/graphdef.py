"""Read DeepSpeech v0.1.0's frozen graph (``output_graph.pb``) without TensorFlow.

A frozen GraphDef stores each trained variable as a ``Const`` node whose ``value`` attribute is a
TensorProto. TensorFlow's compiled protobuf schema ships in the ``tensorboard`` package, which is all
we need to parse the file. Node names and layouts come from v0.1.0's ``DeepSpeech.py``:

- ``h1`` [494, n_hidden_1], ``h2`` [n_hidden_1, n_hidden_2], ``h3`` [n_hidden_2, n_hidden_3], with
  biases ``b1``, ``b2``, ``b3``; clipped ReLU min(max(x, 0), 20) after each;
- ``bidirectional_rnn/{fw,bw}/basic_lstm_cell/kernel`` [n_hidden_3 + n_cell, 4 n_cell] and ``.../bias``
  [4 n_cell] (TensorFlow before 1.2 named them ``weights``/``biases``; both are accepted): a BasicLSTMCell
  with forget bias 1.0 added at run time, gate blocks i, j, f, o along the columns, and the kernel's rows
  the cell input followed by the previous output h;
- ``h5`` [2 n_cell, n_hidden_5] with ``b5``, clipped ReLU; ``h6`` [n_hidden_5, 29] with ``b6``: the logits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkface.core.features.deepspeech.inputs import N_FEATURES

N_CHARACTERS = 29  # a-z, space, apostrophe, CTC blank
RELEASE_URL = "https://github.com/mozilla/DeepSpeech/releases/tag/v0.1.0"
RELEASE_HINT = (
    "DeepSpeech v0.1.0's acoustic model is published on the release page "
    f"{RELEASE_URL}: download deepspeech-0.1.0-models.tar.gz, unpack it, and pass the file "
    "models/output_graph.pb (about 470 MB)."
)
LSTM_DIRECTIONS = ("fw", "bw")
_LSTM_PREFIX = "bidirectional_rnn/{direction}/basic_lstm_cell/"
_KERNEL_NAMES = ("kernel", "weights")
_BIAS_NAMES = ("bias", "biases")


class DeepSpeechModelError(ValueError):
    """The DeepSpeech model file is missing, is not a GraphDef, lacks a node, or has a wrong shape."""


@dataclass(frozen=True)
class LstmWeights:
    kernel: np.ndarray  # [input + n_cell, 4 n_cell], gate blocks i, j, f, o
    bias: np.ndarray  # [4 n_cell]


@dataclass(frozen=True)
class DeepSpeechWeights:
    """All trained tensors of the v0.1.0 acoustic model, in TensorFlow's layout, shapes checked."""

    dense: dict[str, np.ndarray]  # h1, b1, h2, b2, h3, b3, h5, b5, h6, b6
    lstm: dict[str, LstmWeights]  # "fw", "bw"
    forget_bias: float = 1.0

    @property
    def n_cell(self) -> int:
        return self.lstm["fw"].bias.shape[0] // 4

    @property
    def n_hidden(self) -> tuple[int, int, int, int]:
        """(n_hidden_1, n_hidden_2, n_hidden_3, n_hidden_5)."""
        d = self.dense
        return d["b1"].shape[0], d["b2"].shape[0], d["b3"].shape[0], d["b5"].shape[0]


_DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 19: np.dtype("<f2")}  # DT_FLOAT, DT_DOUBLE, DT_HALF


def tensor_to_array(tensor, name: str = "?") -> np.ndarray:
    """A TensorProto (float, double or half) -> float32 array of its declared shape."""
    if tensor.dtype not in _DTYPES:
        raise DeepSpeechModelError(
            f"node {name!r}: unsupported tensor dtype enum {tensor.dtype} (want float)"
        )
    dtype = _DTYPES[tensor.dtype]
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    count = int(np.prod(shape, dtype=np.int64))
    if tensor.tensor_content:
        flat = np.frombuffer(tensor.tensor_content, dtype=dtype)
    elif tensor.dtype == 19:
        flat = np.asarray(tensor.half_val, dtype=np.uint16).view(np.float16)
    elif tensor.dtype == 2:
        flat = np.asarray(tensor.double_val, dtype=np.float64)
    else:
        flat = np.asarray(tensor.float_val, dtype=np.float32)
    if flat.size == count:
        return flat.astype(np.float32).reshape(shape)
    if 0 < flat.size < count:
        # TensorFlow's convention for repeated *_val fields: the last value fills the rest.
        flat = np.concatenate([flat, np.full(count - flat.size, flat[-1], dtype=flat.dtype)])
        return flat.astype(np.float32).reshape(shape)
    raise DeepSpeechModelError(
        f"node {name!r}: tensor holds {flat.size} values but its shape {list(shape)} needs {count}"
    )


def read_graphdef(path: str | os.PathLike):
    """Parse a binary GraphDef; clear errors for a missing file or one that is not a GraphDef."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2

    path = Path(path)
    if not path.is_file():
        raise DeepSpeechModelError(f"DeepSpeech model file not found: {path}. {RELEASE_HINT}")
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise DeepSpeechModelError(
            f"{path} is not a TensorFlow GraphDef (protobuf decode failed: {exc}). {RELEASE_HINT}"
        ) from exc
    if len(graph.node) == 0:
        raise DeepSpeechModelError(
            f"{path} is not a TensorFlow GraphDef: it holds no graph nodes. {RELEASE_HINT}"
        )
    return graph


def constant_tensors(graph) -> dict[str, Any]:
    """Every ``Const`` node's ``value`` attribute (an AttrValue) by node name; decoded on demand."""
    out: dict[str, Any] = {}
    for node in graph.node:
        if node.op == "Const" and "value" in node.attr:
            out[node.name] = node.attr["value"]
    return out


def _take(consts: dict, names: tuple[str, ...], path: Path) -> tuple[str, np.ndarray]:
    for name in names:
        if name in consts:
            return name, tensor_to_array(consts[name].tensor, name)
    # A graph re-exported under a name scope (tf.import_graph_def(..., name="deepspeech")) prefixes
    # every node: accept one unambiguous "<scope>/<name>".
    for name in names:
        scoped = [key for key in consts if key.endswith("/" + name)]
        if len(scoped) == 1:
            return scoped[0], tensor_to_array(consts[scoped[0]].tensor, scoped[0])
    raise DeepSpeechModelError(
        f"{path}: node {names[0]!r} not found (looked for {', '.join(repr(n) for n in names)}); "
        f"this is not the DeepSpeech v0.1.0 acoustic model graph. {RELEASE_HINT}"
    )


def _check(name: str, array: np.ndarray, expected: tuple[int | None, ...], path: Path) -> None:
    ok = array.ndim == len(expected) and all(
        e is None or a == e for a, e in zip(array.shape, expected, strict=False)
    )
    if not ok:
        shown = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
        raise DeepSpeechModelError(
            f"{path}: node {name!r} has shape {list(array.shape)}, expected {shown} "
            "(DeepSpeech v0.1.0 layout)"
        )


def load_weights(path: str | os.PathLike) -> DeepSpeechWeights:
    """Read and shape-check every tensor the acoustic model needs from ``output_graph.pb``."""
    path = Path(path)
    consts = constant_tensors(read_graphdef(path))
    dense: dict[str, np.ndarray] = {}
    for key in ("h1", "b1", "h2", "b2", "h3", "b3", "h5", "b5", "h6", "b6"):
        dense[key] = _take(consts, (key,), path)[1]

    # Sizes are read from the file (the released graph has 2048 everywhere), then checked for consistency.
    _check("h1", dense["h1"], (N_FEATURES, None), path)
    n1 = dense["h1"].shape[1]
    _check("b1", dense["b1"], (n1,), path)
    _check("h2", dense["h2"], (n1, None), path)
    n2 = dense["h2"].shape[1]
    _check("b2", dense["b2"], (n2,), path)
    _check("h3", dense["h3"], (n2, None), path)
    n3 = dense["h3"].shape[1]
    _check("b3", dense["b3"], (n3,), path)

    lstm: dict[str, LstmWeights] = {}
    n_cell: int | None = None
    for direction in LSTM_DIRECTIONS:
        prefix = _LSTM_PREFIX.format(direction=direction)
        k_name, kernel = _take(consts, tuple(prefix + n for n in _KERNEL_NAMES), path)
        b_name, bias = _take(consts, tuple(prefix + n for n in _BIAS_NAMES), path)
        if n_cell is None:
            if kernel.ndim != 2 or kernel.shape[1] % 4 or kernel.shape[0] != n3 + kernel.shape[1] // 4:
                raise DeepSpeechModelError(
                    f"{path}: node {k_name!r} has shape {list(kernel.shape)}, expected "
                    f"[{n3} + n_cell, 4 * n_cell] (input {n3} from h3, then the cell's own output)"
                )
            n_cell = kernel.shape[1] // 4
        _check(k_name, kernel, (n3 + n_cell, 4 * n_cell), path)
        _check(b_name, bias, (4 * n_cell,), path)
        lstm[direction] = LstmWeights(kernel=kernel, bias=bias)

    assert n_cell is not None
    _check("h5", dense["h5"], (2 * n_cell, None), path)
    n5 = dense["h5"].shape[1]
    _check("b5", dense["b5"], (n5,), path)
    _check("h6", dense["h6"], (n5, N_CHARACTERS), path)
    _check("b6", dense["b6"], (N_CHARACTERS,), path)
    return DeepSpeechWeights(dense=dense, lstm=lstm)
