"""dlib's 68-point shape predictor (an ensemble of regression trees) evaluated with NumPy, for many
faces at once, bit for bit as dlib computes it.

dlib's ``shape_predictor`` costs 3-4 ms a call on the project's AMD machines (0.8 ms on an Intel one):
each call adds up 7,500 leaf vectors (15 cascades of 500 trees, 136 floats each) picked from a 65 MB
table, so the time goes on cache misses, not arithmetic. Here a batch of (image, box) pairs goes
through each cascade together, so a cascade's 4.4 MB of leaves are fetched once per batch while they
are in cache: about 1 ms a face for a 3 s clip's 75 boxes on the same machines (0.5 ms of it the
tree walks in NumPy), against dlib's 3-4 ms.

The algorithm is dlib's (``dlib/image_processing/shape_predictor.h``), step for step: per cascade the
similarity transform from the mean shape to the current shape (Umeyama, in closed form for 2-D, in
double, kept as float32), feature pixels placed relative to their anchor landmarks in float32 and
rounded in image pixels, read as grey ``(r + g + b) // 3`` (0 outside the image), each tree walked by
``pixel[i1] - pixel[i2] > threshold``, and the chosen leaves added to the shape in float32 in dlib's
order (the current shape first, then tree by tree: a different order changes the last bits, which
move a feature pixel across a rounding boundary now and then); points are rounded to whole pixels as
dlib returns them. The tests compare with dlib's own predictor on fixture frames: equal to the bit.

The model is read from dlib's own ``.dat`` file (dlib's serialisation: variable-length integers, a
float as a mantissa and an exponent; ~4 s, vectorised) and cached as NumPy arrays under
``$XDG_CACHE_HOME/talkface/dlib_shape`` (``~/.cache`` by default), named by the file's SHA-256. Later
processes map the 65 MB leaf table copy-on-write in milliseconds and share its pages (dlib's own loader
takes ~1 s and ~100 MB per process).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkface.utils.atomic import atomic_path

#: Bump when the cached arrays' layout changes.
CACHE_VERSION = 2
#: Rows kept free after the leaf table for a batch's current shapes (bigger batches are split).
SPARE_ROWS = 256


class UnsupportedModel(ValueError):
    """A ``.dat`` file this reader does not handle (the caller falls back to dlib's own predictor)."""


# --------------------------------------------------------------------------------------------------
# Reading dlib's serialisation.


def _token_starts(buf: np.ndarray, block: int = 4096) -> np.ndarray:
    """Offsets of the variable-length integers that make up a dlib stream, as a bool mask.

    Each integer is one byte ``size | sign`` (size in the low bits) followed by ``size`` little-endian
    bytes, so where a token starts fixes where the next one starts. The chain is followed from every
    ``block``-th byte at once (NumPy, in lockstep); a chain started inside a token soon falls into
    step with the true one, and the part of each block before they meet is corrected afterwards.
    """
    n = len(buf)
    step = (buf & 0x0F) + np.uint8(1)  # uint8: the file may be 100 MB
    starts = np.zeros(n, dtype=bool)
    n_blocks = (n + block - 1) // block
    pos = np.arange(n_blocks, dtype=np.int64) * block
    end = np.minimum(pos + block, n)
    exits = np.empty(n_blocks, dtype=np.int64)
    active = np.ones(n_blocks, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        p = pos[idx]
        starts[p] = True
        p = p + step[p]
        pos[idx] = p
        done = p >= end[idx]
        exits[idx[done]] = p[done]
        active[idx[done]] = False
        if done.all():
            break
    # Correct each block's head: follow the true chain from where the previous block's true chain
    # left off until it meets this block's chain.
    true_exit = int(exits[0])
    for b in range(1, n_blocks):
        lo, hi = b * block, int(end[b])
        q = true_exit
        if q >= hi:  # a token spanning the whole block
            starts[lo:hi] = False
            true_exit = q
            continue
        visited = []
        while q < hi and not starts[q]:
            visited.append(q)
            q += int(step[q])
        starts[lo:q] = False
        if visited:
            starts[visited] = True
        true_exit = int(exits[b]) if q < hi else q
    return starts


def _decode_tokens(buf: np.ndarray, piece: int = 1 << 22) -> np.ndarray:
    """Every integer of a dlib stream, in order (int32: a shape predictor's all fit)."""
    starts = _token_starts(buf)
    padded = np.concatenate([buf, np.zeros(4, np.uint8)])
    out = np.empty(int(np.count_nonzero(starts)), dtype=np.int32)
    n = 0
    for lo in range(0, len(buf), piece):
        at = np.flatnonzero(starts[lo:lo + piece]) + lo
        head = padded[at]
        size = head & 0x0F
        if (size > 4).any():
            raise UnsupportedModel("an integer of more than 4 bytes (not a dlib shape predictor?)")
        val = np.zeros(len(at), dtype=np.int64)
        for k in range(4):
            byte = padded[at + (1 + k)].astype(np.int64)
            byte[size <= k] = 0
            val |= byte << (8 * k)
        if (val > np.iinfo(np.int32).max).any():
            raise UnsupportedModel("an integer too large for a dlib shape predictor")
        np.negative(val, out=val, where=(head & 0x80) != 0)
        out[n:n + len(at)] = val
        n += len(at)
    return out


def _floats(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """dlib ``float_details`` pairs to float32 (mantissa * 2**exponent; no inf/nan in a model)."""
    if (exponent >= 32000).any():
        raise UnsupportedModel("infinite or NaN value in the model")
    return np.ldexp(mantissa.astype(np.float64), exponent.astype(np.int32)).astype(np.float32)


@dataclass
class ShapeModel:
    """The arrays of a dlib shape predictor (C cascades, T trees of depth D, F feature pixels, P points).

    ``initial_shape`` (2P,) float32, normalised box coordinates; ``split_idx`` (C, T, 2^D - 1, 2)
    int32 feature indices; ``split_thresh`` (C, T, 2^D - 1) float32; ``leaves`` (C, T * 2^D, 2P)
    float32; ``anchor`` (C, F) int32 landmark index; ``deltas`` (C, F, 2) float32. ``table``, when
    given: the leaves as rows followed by ``SPARE_ROWS`` free rows (``leaves`` is then a view of it).
    """

    initial_shape: np.ndarray
    split_idx: np.ndarray
    split_thresh: np.ndarray
    leaves: np.ndarray
    anchor: np.ndarray
    deltas: np.ndarray
    table: np.ndarray | None = None

    @property
    def n_points(self) -> int:
        return len(self.initial_shape) // 2


def read_dlib_model(path: str | os.PathLike) -> ShapeModel:
    """Parse a dlib ``shape_predictor`` ``.dat`` file whose trees are all full and of one depth."""
    buf = np.fromfile(str(path), dtype=np.uint8)
    v = _decode_tokens(buf)
    i = 0

    def take(k: int) -> np.ndarray:
        nonlocal i
        if i + k > len(v):
            raise UnsupportedModel("the file ends early")
        out = v[i:i + k]
        i += k
        return out

    if take(1)[0] != 1:
        raise UnsupportedModel("not a version-1 dlib shape_predictor")
    nr, nc = take(2)
    if nr >= 0 or nc != -1:
        raise UnsupportedModel("initial shape is not a column vector in dlib's current matrix format")
    n_coords = int(-nr)
    init = take(2 * n_coords).reshape(-1, 2)
    initial_shape = _floats(init[:, 0], init[:, 1])
    n_casc = int(take(1)[0])
    idx_c, thr_c, leaf_c = [], [], []
    for _ in range(n_casc):
        n_trees = int(take(1)[0])
        n_splits = int(v[i])
        depth = int(np.log2(n_splits + 1))
        if n_splits < 1 or 2 ** depth != n_splits + 1:
            raise UnsupportedModel("a tree that is not full")
        n_leaves = n_splits + 1
        leaf_tokens = 2 + 2 * n_coords
        tree_tokens = 1 + 4 * n_splits + 1 + n_leaves * leaf_tokens
        trees = take(n_trees * tree_tokens).reshape(n_trees, tree_tokens)
        if (trees[:, 0] != n_splits).any() or (trees[:, 1 + 4 * n_splits] != n_leaves).any():
            raise UnsupportedModel("trees of different depths")
        splits = trees[:, 1:1 + 4 * n_splits].reshape(n_trees, n_splits, 4)
        leaves = trees[:, 2 + 4 * n_splits:].reshape(n_trees, n_leaves, leaf_tokens)
        if (leaves[:, :, 0] != -n_coords).any() or (leaves[:, :, 1] != -1).any():
            raise UnsupportedModel("leaf values of an unexpected size")
        vals = leaves[:, :, 2:].reshape(n_trees, n_leaves, n_coords, 2)
        idx_c.append(splits[:, :, :2].astype(np.int32))
        thr_c.append(_floats(splits[:, :, 2], splits[:, :, 3]))
        leaf_c.append(_floats(vals[..., 0], vals[..., 1]).reshape(n_trees * n_leaves, n_coords))
    if int(take(1)[0]) != n_casc:
        raise UnsupportedModel("anchor list does not match the cascades")
    anchors = []
    for _ in range(n_casc):
        n_feat = int(take(1)[0])
        anchors.append(take(n_feat).astype(np.int32))
    if int(take(1)[0]) != n_casc:
        raise UnsupportedModel("delta list does not match the cascades")
    deltas = []
    for _ in range(n_casc):
        n_feat = int(take(1)[0])
        d = take(4 * n_feat).reshape(n_feat, 2, 2)
        deltas.append(_floats(d[..., 0], d[..., 1]))
    if i != len(v):
        raise UnsupportedModel(f"{len(v) - i} unread values at the end of the file")
    model = ShapeModel(
        initial_shape=initial_shape,
        split_idx=np.stack(idx_c),
        split_thresh=np.stack(thr_c),
        leaves=np.stack(leaf_c),
        anchor=np.stack(anchors),
        deltas=np.stack(deltas),
    )
    if model.split_idx.max() >= model.anchor.shape[1] or model.anchor.max() >= model.n_points:
        raise UnsupportedModel("an index out of range")
    return model


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "talkface" / "dlib_shape"


_SMALL_ARRAYS = ("initial_shape", "split_idx", "split_thresh", "anchor", "deltas")


def load_model(path: str | os.PathLike, sha256: str) -> ShapeModel:
    """The model at ``path`` (SHA-256 ``sha256``), from the NumPy cache when present, else parsed
    from the file (seconds: docs/landmarks.md renders the measured parse) and cached. An unwritable
    cache folder only costs the parse each time.

    The cache is two files: the small arrays (``.npz``) and the leaf table with its spare rows
    (``.npy``), which is mapped copy-on-write: loading takes milliseconds, and processes on one machine
    share its pages (only the spare rows a process writes become its own).
    """
    stem = f"{sha256}.v{CACHE_VERSION}"
    small, leaves = cache_dir() / f"{stem}.npz", cache_dir() / f"{stem}.leaves.npy"
    if small.exists() and leaves.exists():
        try:
            with np.load(small) as z:
                arrays = {k: z[k] for k in _SMALL_ARRAYS}
            table = np.asarray(np.load(leaves, mmap_mode="c"))  # a plain array over the mapping
            c, t, s = arrays["split_thresh"].shape
            n_rows = c * t * (s + 1)
            expected = (n_rows + SPARE_ROWS, len(arrays["initial_shape"]))
            if table.shape == expected and table.dtype == np.float32:
                return ShapeModel(**arrays, leaves=table[:n_rows].reshape(c, t * (s + 1), -1), table=table)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache: parse again and replace it
    model = read_dlib_model(path)
    table = _with_spare_rows(model.leaves)
    try:
        with atomic_path(leaves) as tmp:
            np.save(tmp, table)
        with atomic_path(small) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{k: getattr(model, k) for k in _SMALL_ARRAYS})
    except OSError:
        pass
    n_rows = len(table) - SPARE_ROWS
    return dataclasses.replace(model, leaves=table[:n_rows].reshape(model.leaves.shape), table=table)


def _with_spare_rows(leaves: np.ndarray) -> np.ndarray:
    """(C, R, 2P) leaves as one (C * R + SPARE_ROWS, 2P) table, the spare rows zero."""
    rows = leaves.reshape(-1, leaves.shape[-1])
    table = np.zeros((len(rows) + SPARE_ROWS, rows.shape[1]), dtype=np.float32)
    table[:len(rows)] = rows
    return table


# --------------------------------------------------------------------------------------------------
# Evaluation.


class BatchShapePredictor:
    """dlib's shape predictor for many (image, box) pairs at once; see the module docstring.

    The chosen leaves are added to the current shape in float32 in dlib's order (the shape first, then
    tree by tree), so the result is dlib's to the bit. That sum runs as a sparse product (SciPy's CSR
    times dense adds row by row), or with ``torch.nn.functional.embedding_bag`` when torch is already
    imported (2-3x faster; importing torch for it alone would cost ~2 s), or for a few boxes as a
    NumPy gather and sum (NumPy reduces a non-contiguous axis in order).
    """

    #: Batches are split into pieces of at most this many boxes (the table's spare rows).
    MAX_BATCH = SPARE_ROWS
    #: Up to this many boxes the leaves are summed with NumPy.
    SMALL_BATCH = 8

    def __init__(self, model: ShapeModel) -> None:
        self.model = model
        n_casc, n_trees, n_splits = model.split_thresh.shape
        self._depth = int(np.log2(n_splits + 1))
        n_feat = model.anchor.shape[1]
        self._n_feat = n_feat
        init = model.initial_shape.astype(np.float64).reshape(-1, 2)
        centred = init - init.mean(0)
        sigma_from = float((centred ** 2).sum(1).mean()) * len(centred)
        # dlib fits the similarity transform mean shape -> current shape (Umeyama, in double) and
        # keeps its 2x2 part [[p, -q], [q, p]]. In 2-D, p and q are linear in the current shape
        # (the centring terms vanish against the centred mean shape): p, q = shape @ _sim.
        sim = np.zeros((2 * len(init), 2))
        sim[0::2, 0], sim[1::2, 0] = centred[:, 0], centred[:, 1]
        sim[0::2, 1], sim[1::2, 1] = -centred[:, 1], centred[:, 0]
        self._sim = sim / sigma_from
        # Per cascade: split tables (tree, node) flattened; feature pixels as anchor + delta.
        self._idx1 = model.split_idx[..., 0].reshape(n_casc, -1).astype(np.intp)
        self._idx2 = model.split_idx[..., 1].reshape(n_casc, -1).astype(np.intp)
        self._thresh = np.ascontiguousarray(model.split_thresh).reshape(n_casc, -1)
        self._tree_base = (np.arange(n_trees) * n_splits)[None, :]
        self._anchor_x = (2 * model.anchor).astype(np.intp)
        self._anchor_y = self._anchor_x + 1
        self._dx = np.ascontiguousarray(model.deltas[..., 0])[:, None, :]
        self._dy = np.ascontiguousarray(model.deltas[..., 1])[:, None, :]
        n_rows = n_trees * (n_splits + 1)
        self._leaf_base = ((np.arange(n_trees) * (n_splits + 1))[None, :]
                           + (np.arange(n_casc) * n_rows - n_splits)[:, None, None])
        self._spare = n_casc * n_rows
        table = model.table
        if table is None or table.shape != (n_casc * n_rows + SPARE_ROWS, len(model.initial_shape)):
            table = _with_spare_rows(model.leaves)
            # The model's leaves from now on live in the table (one 65 MB copy, not two).
            model = dataclasses.replace(model, leaves=table[:self._spare].reshape(model.leaves.shape),
                                        table=table)
            self.model = model
        self._table = table
        self._torch_table: Any = None

    def _leaf_summer(self, b: int) -> tuple[np.ndarray, Any]:
        """For a batch of ``b``: the (b, 1 + T) int32 row table to fill (column 0: the current shapes'
        spare rows, then each tree's leaf row) and a function of the current shapes (b, 2P) that
        returns them plus those leaves, added in dlib's order."""
        rows = np.empty((b, 1 + self._tree_base.shape[1]), dtype=np.int32)
        rows[:, 0] = self._spare + np.arange(b)
        spare = self._table[self._spare:self._spare + b]
        if b <= self.SMALL_BATCH:
            def add(shape: np.ndarray) -> np.ndarray:
                spare[:] = shape
                return np.add.reduce(self._table[rows], axis=1)
            return rows, add
        torch = sys.modules.get("torch")
        if torch is not None:
            if self._torch_table is None:
                self._torch_table = torch.from_numpy(self._table)
            index = torch.from_numpy(rows)
            bag = torch.nn.functional.embedding_bag

            def add_torch(shape: np.ndarray) -> np.ndarray:
                spare[:] = shape
                return bag(index, self._torch_table, mode="sum").numpy()
            return rows, add_torch
        from scipy.sparse import csr_matrix

        # The matrix's column indices are ``rows`` itself (same memory), refilled every cascade.
        ones = np.ones(rows.size, dtype=np.float32)
        starts = np.arange(0, rows.size + 1, rows.shape[1], dtype=np.int32)
        picks = csr_matrix((ones, rows.reshape(-1), starts), shape=(b, len(self._table)))
        if not np.shares_memory(picks.indices, rows):
            raise RuntimeError("scipy copied the index array")

        def add_sparse(shape: np.ndarray) -> np.ndarray:
            spare[:] = shape
            return np.asarray(picks @ self._table, dtype=np.float32)
        return rows, add_sparse

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray, rects: np.ndarray,
                 index: np.ndarray | None = None) -> np.ndarray:
        """(B, P, 2) float32 whole-pixel landmarks for ``rects`` (B, 4) int (left, top, right, bottom).

        ``images``: B uint8 arrays, RGB (H, W, 3) or grey (H, W); or, with ``index`` (B,) int, one
        stacked array (K, H, W[, 3]) whose frame ``index[i]`` holds box ``i`` (the pixels are then read
        for the whole batch at once).
        """
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        step = self.MAX_BATCH
        if len(rects) > step:
            return np.concatenate([
                self(images if index is not None else images[i:i + step], rects[i:i + step],
                     None if index is None else index[i:i + step])
                for i in range(0, len(rects), step)])
        m = self.model
        b = len(rects)
        if b == 0:
            return np.zeros((0, m.n_points, 2), np.float32)
        if index is not None:
            stack = np.ascontiguousarray(images)
            pixels = _StackPixels(stack, np.asarray(index, dtype=np.intp))
        else:
            pixels = _ListPixels([np.ascontiguousarray(img) for img in images])
        left, top = rects[:, 0:1], rects[:, 1:2]
        width, height = rects[:, 2:3] - left, rects[:, 3:4] - top
        shape = np.broadcast_to(m.initial_shape, (b, len(m.initial_shape))).copy()  # (B, 2P) float32
        row_off = (np.arange(b) * self._n_feat)[:, None]
        rows, add_leaves = self._leaf_summer(b)
        for c in range(len(m.leaves)):
            # Feature pixels: anchor landmark + the similarity-transformed delta, in box coordinates
            # (float32 as dlib), then in image pixels (double), rounded; 0 outside the image.
            pq = np.einsum("bi,ij->bj", shape.astype(np.float64), self._sim).astype(np.float32)
            p, q = pq[:, 0:1], pq[:, 1:2]
            dx, dy = self._dx[c], self._dy[c]
            ux = (p * dx + (-q) * dy) + shape[:, self._anchor_x[c]]
            uy = (q * dx + p * dy) + shape[:, self._anchor_y[c]]
            x = np.floor(left + width * ux.astype(np.float64) + 0.5)
            y = np.floor(top + height * uy.astype(np.float64) + 0.5)
            ff = pixels.read(x.astype(np.intp), y.astype(np.intp)).reshape(-1)
            # Walk every tree: node n's children are 2n+1 (difference > threshold) and 2n+2.
            idx1, idx2, thresh = self._idx1[c], self._idx2[c], self._thresh[c]
            node = np.zeros((b, self._tree_base.shape[1]), dtype=np.intp)
            for _ in range(self._depth):
                at = self._tree_base + node
                go = (ff[row_off + idx1[at]] - ff[row_off + idx2[at]]) > thresh[at]
                node *= 2
                node += 2
                node -= go
            np.add(node, self._leaf_base[c], out=rows[:, 1:], casting="unsafe")
            shape = add_leaves(shape)
        pts = shape.reshape(b, -1, 2).astype(np.float64)
        out = np.empty(pts.shape, dtype=np.float32)
        out[..., 0] = np.floor(left + width * pts[..., 0] + 0.5)
        out[..., 1] = np.floor(top + height * pts[..., 1] + 0.5)
        return out


class _StackPixels:
    """Grey values (dlib's ``(r + g + b) // 3`` for colour) at pixel positions of frames in one stack."""

    def __init__(self, stack: np.ndarray, index: np.ndarray) -> None:
        self.h, self.w = stack.shape[1], stack.shape[2]
        self.ch = 1 if stack.ndim == 3 else stack.shape[3]
        self.flat = stack.reshape(-1)
        self.base = (index * (self.h * self.w * self.ch))[:, None]

    def read(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        outside = (x < 0) | (y < 0) | (x >= self.w) | (y >= self.h)
        off = (y * self.w + x) * self.ch + self.base
        off[outside] = 0
        if self.ch == 1:
            vals = self.flat[off].astype(np.float32)
        else:
            vals = ((self.flat[off].astype(np.int16) + self.flat[off + 1] + self.flat[off + 2]) // 3
                    ).astype(np.float32)
        vals[outside] = 0.0
        return vals


class _ListPixels:
    """As :class:`_StackPixels` for a list of separate images (any sizes)."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images

    def read(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        vals = np.zeros(x.shape, dtype=np.float32)
        for k, img in enumerate(self.images):
            vals[k] = _StackPixels(img[None], np.zeros(1, np.intp)).read(x[k:k + 1], y[k:k + 1])[0]
        return vals
