"""The DeepSpeech v0.1.0 acoustic model in PyTorch, built from the weights of ``output_graph.pb``.

TensorFlow's BasicLSTMCell computes, from ``z = [x, h] @ kernel + bias`` split into blocks i, j, f, o::

    c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j);   h' = tanh(c') * sigmoid(o)

torch.nn.LSTM computes the same with gate rows ordered i, f, g, o, ``weight_ih`` [4H, input],
``weight_hh`` [4H, H] and two biases, so the kernel is split by rows (input part, recurrent part),
transposed, its column blocks reordered (i, f, j, o), and the forget bias folded into ``bias_ih``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from talkface.preprocess.features.deepspeech.graphdef import N_CHARACTERS, DeepSpeechWeights
from talkface.preprocess.features.deepspeech.inputs import N_FEATURES

RELU_CLIP = 20.0


def _dense(kernel: np.ndarray, bias: np.ndarray) -> nn.Linear:
    """TF's ``x @ kernel + bias`` (kernel [in, out]) as an nn.Linear (weight [out, in])."""
    layer = nn.Linear(kernel.shape[0], kernel.shape[1])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
        layer.bias.copy_(torch.from_numpy(bias))
    return layer


def tf_lstm_to_torch(kernel: np.ndarray, bias: np.ndarray, forget_bias: float) -> dict[str, np.ndarray]:
    """BasicLSTMCell kernel/bias (gates i, j, f, o) -> nn.LSTM parameters (gates i, f, g=j, o)."""
    n_cell = bias.shape[0] // 4
    n_in = kernel.shape[0] - n_cell
    blocks = {g: slice(k * n_cell, (k + 1) * n_cell) for k, g in enumerate("ijfo")}
    order = ("i", "f", "j", "o")
    w = np.concatenate([kernel[:, blocks[g]] for g in order], axis=1)  # [in + H, 4H]
    b = np.concatenate([bias[blocks[g]] + (forget_bias if g == "f" else 0.0) for g in order])
    return {
        "weight_ih": np.ascontiguousarray(w[:n_in].T, dtype=np.float32),
        "weight_hh": np.ascontiguousarray(w[n_in:].T, dtype=np.float32),
        "bias_ih": b.astype(np.float32),
        "bias_hh": np.zeros_like(b, dtype=np.float32),
    }


class DeepSpeechAcoustic(nn.Module):
    """(batch, steps, 494) whitened inputs + lengths -> (batch, steps, 29) logits (no softmax)."""

    def __init__(self, weights: DeepSpeechWeights) -> None:
        super().__init__()
        d = weights.dense
        self.layer1 = _dense(d["h1"], d["b1"])
        self.layer2 = _dense(d["h2"], d["b2"])
        self.layer3 = _dense(d["h3"], d["b3"])
        n_cell = weights.n_cell
        self.lstm = nn.LSTM(d["h3"].shape[1], n_cell, batch_first=True, bidirectional=True)
        for direction, suffix in (("fw", "l0"), ("bw", "l0_reverse")):
            params = tf_lstm_to_torch(
                weights.lstm[direction].kernel, weights.lstm[direction].bias, weights.forget_bias
            )
            with torch.no_grad():
                for key, value in params.items():
                    getattr(self.lstm, f"{key}_{suffix}").copy_(torch.from_numpy(value))
        self.layer5 = _dense(d["h5"], d["b5"])
        self.layer6 = _dense(d["h6"], d["b6"])
        self.n_cell = n_cell
        assert self.layer1.in_features == N_FEATURES and self.layer6.out_features == N_CHARACTERS

    @staticmethod
    def _clipped_relu(x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=0.0, max=RELU_CLIP)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        batch, steps, _ = inputs.shape
        x = self._clipped_relu(self.layer1(inputs))
        x = self._clipped_relu(self.layer2(x))
        x = self._clipped_relu(self.layer3(x))
        if lengths is None or bool((lengths == steps).all()):
            out, _ = self.lstm(x)
        else:
            # Packing runs each clip's backward pass from its own last step, as TF's sequence_length does.
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        x = self._clipped_relu(self.layer5(out))
        return self.layer6(x)
