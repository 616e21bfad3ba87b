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

from talkface.core.features.deepspeech.graphdef import N_CHARACTERS, DeepSpeechWeights
from talkface.core.features.deepspeech.inputs import N_FEATURES

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


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh as 2 sigmoid(2x) - 1: on this CPU build torch.tanh on small per-step tensors measured
    ~1-6 ms per call inside the loop against ~0.05 ms for sigmoid; the identity is exact in real
    arithmetic and costs ~1e-7 absolute error in float32."""
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first ``lengths[b]`` steps, leaving its padding in place (an involution)."""
    steps = x.shape[1]
    t = torch.arange(steps, device=x.device)[None, :]
    lens = lengths.to(x.device)[:, None]
    index = torch.where(t < lens, lens - 1 - t, t)
    return torch.gather(x, 1, index[:, :, None].expand(-1, -1, x.shape[2]))


class DeepSpeechAcoustic(nn.Module):
    """(batch, steps, 494) whitened inputs + lengths -> (batch, steps, 29) logits (no softmax).

    ``lstm_impl``: "loop" runs the recurrence step by step with each direction's input projections
    precomputed as one GEMM (for one clip on CPU faster than nn.LSTM, docs/deepspeech.md: the recurrent
    mat-vec, bound by memory bandwidth, is then all that is left per step); "torch" calls nn.LSTM (cuDNN
    on GPU; on CPU faster than the loop for several clips, where MKL's small-batch GEMMs are slow on this
    CPU);
    "auto" picks "loop" for one clip on CPU, else "torch". Both use the same parameters.
    """

    lstm_impl: str = "auto"

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
        impl = self.lstm_impl
        if impl == "auto":
            impl = "loop" if x.device.type == "cpu" and batch == 1 else "torch"
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.int64)
        if impl == "loop":
            out = self._bilstm_loop(x, lengths)
        elif bool((lengths == steps).all()):
            out, _ = self.lstm(x)
        else:
            # Packing runs each clip's backward pass from its own last step, as TF's sequence_length does.
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        x = self._clipped_relu(self.layer5(out))
        return self.layer6(x)

    def _bilstm_loop(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Both directions of the LSTM; padding sits after each clip's steps in either direction's order,
        so it never reaches a real step and needs no mask."""
        lstm, n = self.lstm, self.n_cell
        batch, steps, width = x.shape
        flat = x.reshape(-1, width)
        outs = []
        for suffix in ("l0", "l0_reverse"):
            w_ih, w_hh = getattr(lstm, f"weight_ih_{suffix}"), getattr(lstm, f"weight_hh_{suffix}")
            bias = getattr(lstm, f"bias_ih_{suffix}") + getattr(lstm, f"bias_hh_{suffix}")
            # Input projections of every step in one GEMM; transposed views, no weight copies.
            pre_dir = torch.addmm(bias, flat, w_ih.t()).view(batch, steps, 4 * n)
            if suffix == "l0_reverse":
                pre_dir = reverse_within_lengths(pre_dir, lengths)
            w_hh_t = w_hh.t()
            h = x.new_zeros(batch, n)
            c = x.new_zeros(batch, n)
            out = x.new_empty(batch, steps, n)
            for t in range(steps):
                z = torch.addmm(pre_dir[:, t], h, w_hh_t)
                i, f, g, o = z.chunk(4, dim=1)  # PyTorch order: TF's i, f, j, o after the mapping
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * _tanh(g)
                h = torch.sigmoid(o) * _tanh(c)
                out[:, t] = h
            outs.append(out)
        return torch.cat([outs[0], reverse_within_lengths(outs[1], lengths)], dim=2)
