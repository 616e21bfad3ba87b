"""The DeepSpeech v0.1.0 acoustic model in PyTorch, built from the weights of ``output_graph.pb``.

TensorFlow's BasicLSTMCell computes, from ``z = [x, h] @ kernel + bias`` split into blocks i, j, f, o::

    c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j);   h' = tanh(c') * sigmoid(o)

torch.nn.LSTM computes the same with gate rows ordered i, f, g, o, ``weight_ih`` [4H, input],
``weight_hh`` [4H, H] and two biases, so the kernel is split by rows (input part, recurrent part),
transposed, its column blocks reordered (i, f, j, o), and the forget bias folded into ``bias_ih``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the enclosed ops on the calling thread alone (then restore the thread count).

    ATen splits an element-wise op over its OpenMP threads once it has more than 32768 elements; the
    LSTM cell's per-step tensors (2 directions x batch x 4 n_cell) pass that mark but hold well under
    a millisecond of work, and a parallel region waits for its slowest thread: on a shared CPU, where a
    thread is often descheduled, each such op measured 3-50 ms against ~0.1 ms on one thread
    (docs/deepspeech.md). ``torch.set_num_threads`` is process-wide and cheap (~0.2 us); the
    recurrent GEMM between these blocks still runs on every thread.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Reverse each sequence's first ``lengths[b]`` steps along ``dim`` (1: batch-first (B, T, C); 0:
    time-first (T, B, C)), leaving its padding in place (an involution)."""
    steps = x.shape[dim]
    t = torch.arange(steps, device=x.device)[None, :]
    lens = lengths.to(x.device)[:, None]
    index = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    if dim == 0:
        index = index.t()
    return torch.gather(x, dim, index[:, :, None].expand(-1, -1, x.shape[2]))


class DeepSpeechAcoustic(nn.Module):
    """(batch, steps, 494) whitened inputs + lengths -> (batch, steps, 29) logits (no softmax).

    ``lstm_impl``: "loop" runs the recurrence step by step (``_bilstm_loop``: input projections as one
    GEMM per direction, then per step one batched GEMM for both directions' recurrent products and the
    cell's element-wise math on one thread); "torch" calls nn.LSTM (cuDNN on GPU; on CPU oneDNN's
    fused LSTM primitive when no clip is padded), packed when lengths differ; "auto" is "torch" (it was
    "loop" for one clip on CPU until ``benchmarks/bench_deepspeech_lstm.py`` measured oneDNN's primitive
    faster there too: docs/deepspeech.md).
    Both use the same parameters and agree to ~1e-6 relative; at padded steps both give the logits of a
    zero LSTM output (callers cut each clip to its length).
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
        self._loop_cache: tuple[tuple, torch.Tensor] | None = None
        assert self.layer1.in_features == N_FEATURES and self.layer6.out_features == N_CHARACTERS

    def _dense_relu(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return layer(x).clamp_(min=0.0, max=RELU_CLIP)  # in place: no second activation-sized buffer

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        batch, steps, _ = inputs.shape
        impl = self.lstm_impl
        if impl == "auto":
            impl = "torch"
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.int64)
        if impl == "loop":
            return self._forward_loop(inputs, lengths)
        x = self._dense_relu(self.layer1, inputs)
        x = self._dense_relu(self.layer2, x)
        x = self._dense_relu(self.layer3, x)
        if bool((lengths == steps).all()):
            out, _ = self.lstm(x)
        else:
            # Packing runs each clip's backward pass from its own last step, as TF's sequence_length does.
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        x = self._dense_relu(self.layer5, out)
        return self.layer6(x)

    def _forward_loop(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The whole network time-major (T, B, C), clips sorted longest first.

        Time-major, each step's rows are one contiguous block, so the recurrence reads and writes
        without copies; the dense layers act row by row and do not care. Sorted by length, the clips
        still running at step t are the first ``active[t]`` rows, and finished ones drop out of the
        GEMMs (no work on padding)."""
        lengths = lengths.to(torch.int64).cpu()
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_lengths = lengths[order]
        x = inputs[order.to(inputs.device)].transpose(0, 1).contiguous()  # (T, B, 494), 2 MB per min
        x = self._dense_relu(self.layer1, x)
        x = self._dense_relu(self.layer2, x)
        x = self._dense_relu(self.layer3, x)
        x = self._bilstm_loop(x, sorted_lengths)
        x = self._dense_relu(self.layer5, x)
        x = self.layer6(x)  # (T, B, 29)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        return x.transpose(0, 1)[inverse.to(x.device)].contiguous()

    def _recurrent_weights(self) -> torch.Tensor:
        """Both directions' recurrent matrices as one (2, n_cell, 4 n_cell) tensor for ``baddbmm``,
        the g gate's columns doubled (see ``_bilstm_loop``). Built on first use and kept (64 MB per
        direction at the released size); rebuilt when the parameters change or move."""
        lstm = self.lstm
        params = (lstm.weight_hh_l0, lstm.weight_hh_l0_reverse)
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        if self._loop_cache is None or self._loop_cache[0] != key:
            n = self.n_cell
            with torch.no_grad():
                stacked = torch.stack([p.detach().t() for p in params]).contiguous()
                stacked[:, :, 2 * n : 3 * n] *= 2.0
            self._loop_cache = (key, stacked)
        return self._loop_cache[1]

    def _bilstm_loop(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(T, B, input) time-major, B sorted by ``lengths`` (CPU int64) longest first -> (T, B, 2 n_cell),
        0 at padded steps.

        The backward direction runs on each clip reversed within its length, so in both directions a
        clip's padding comes after its real steps and never reaches them. tanh(g) is computed as
        2 sigmoid(2 g) - 1 (exact in real arithmetic, ~1e-7 absolute in float32) with the factor 2 folded
        into g's pre-activations (doubling is exact in floating point), so one sigmoid covers all four
        gates of both directions."""
        lstm, n = self.lstm, self.n_cell
        steps, batch, width = x.shape
        w_hh = self._recurrent_weights()
        pre = x.new_empty(steps, 2, batch, 4 * n)
        for d, suffix in enumerate(("l0", "l0_reverse")):
            source = x if d == 0 else reverse_within_lengths(x, lengths, dim=0)
            bias = getattr(lstm, f"bias_ih_{suffix}") + getattr(lstm, f"bias_hh_{suffix}")
            w_ih = getattr(lstm, f"weight_ih_{suffix}")
            # Every step's input projection in one GEMM; a transposed view, no weight copy.
            proj = torch.addmm(bias, source.reshape(-1, width), w_ih.t()).view(steps, batch, 4 * n)
            proj[:, :, 2 * n : 3 * n] *= 2.0
            pre[:, d] = proj
            del proj, source
        active = [int((lengths > t).sum()) for t in range(steps)]
        out = x.new_zeros(steps, 2, batch, n)
        c = x.new_zeros(2, batch, n)
        h = x.new_zeros(2, batch, n)
        for t in range(steps):
            rows = active[t]
            z = torch.baddbmm(pre[t, :, :rows], h[:, :rows], w_hh)  # (2, rows, 4n), all threads
            with _one_thread():
                z.sigmoid_()
                i, f, g2, o = z.chunk(4, dim=2)  # PyTorch order: TF's i, f, j, o after the mapping
                c_t = c[:, :rows]
                c_t.mul_(f).addcmul_(i, g2, value=2.0).sub_(i)  # f c + i tanh(g)
                torch.mul(o, torch.tanh(c_t), out=out[t, :, :rows])
            h = out[t]
        backward = reverse_within_lengths(out[:, 1], lengths, dim=0)
        return torch.cat([out[:, 0], backward], dim=2)
