"""Identity preservation: face embeddings of generated frames compared with the identity image.

Two embedders, named differently so their numbers are never mixed up:

* ``identity_arcface``: an insightface-layout ArcFace ONNX model (``w600k_r50.onnx``, ``glintr100.onnx``)
  given by path and run with onnxruntime; faces are similarity-aligned to the 112x112 ArcFace template.
  Cosine similarity (ArcFace is trained on the angle), higher is better.
* ``identity_dlib``: dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``, shipped
  by ``face_recognition_models``, so it works with no download) on 150x150 ``get_face_chip`` crops.
  Variant ``euclidean`` (default): Euclidean distance between descriptors, lower is better, as dlib
  intends (its metric learning puts the same person within 0.6; ``details["same_person_share"]`` is the
  share of frames under that threshold). Variant ``cosine``: cosine similarity, higher is better
  (saturates near 1 for any frontal face of a similar person; kept to compare with older numbers).

The clip value is the mean over the sampled frames against the identity image; when the real frames
are present the same measure against the real frame at the same index is reported in
``details["vs_reference"]`` and real frames against the identity image in ``details["ref_vs_identity"]``
(the same embedder, the same frames).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from talkface.evaluate.metrics.base import (
    ClipSample,
    Metric,
    MetricResult,
    MetricUnavailable,
    register_metric,
)
from talkface.evaluate.metrics.face_align_arcface import ARCFACE_SIZE, align_arcface
from talkface.utils.provenance import sha256_file

ARCFACE_HELP = (
    "Pass an insightface-layout ArcFace ONNX model with --arcface-model PATH (option arcface_model), "
    "e.g. w600k_r50.onnx from insightface's 'buffalo_l' model pack "
    "(https://github.com/deepinsight/insightface/tree/master/python-package, models are released for "
    "non-commercial research only). talkface never downloads it."
)


DLIB_SAME_PERSON = 0.6  # dlib: descriptors of one person are within 0.6 (Euclidean)


def identity_euclidean(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | float:
    """Euclidean distance of embeddings along the last axis (broadcasting); a float for 1-D inputs."""
    d = np.linalg.norm(np.asarray(emb_a, dtype=np.float64) - np.asarray(emb_b, dtype=np.float64), axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def identity_cosine(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | float:
    """Cosine similarity of embeddings along the last axis (broadcasting); a float for 1-D inputs."""
    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = num / np.maximum(den, 1e-12)
    return float(cos) if np.ndim(cos) == 0 else cos


# --------------------------------------------------------------------------- ArcFace (ONNX)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """Iterate (field number, wire type, payload start, payload end) of one protobuf message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, nxt = _varint(buf, pos)
            yield number, wire, pos, nxt
        elif wire == 1:
            nxt = pos + 8
            yield number, wire, pos, nxt
        elif wire == 2:
            length, pos = _varint(buf, pos)
            nxt = pos + length
            yield number, wire, pos, nxt
        elif wire == 5:
            nxt = pos + 4
            yield number, wire, pos, nxt
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        pos = nxt


def onnx_first_node_names(path: str | Path, count: int = 8) -> list[str]:
    """Names of the first ``count`` graph nodes of an ONNX file, read from the protobuf wire format.

    (ModelProto.graph = field 7, GraphProto.node = field 1, NodeProto.name = field 3.) The ``onnx``
    package is not a runtime dependency, so this small reader replaces ``onnx.load`` for the one fact
    insightface needs: whether the graph normalises its input itself.
    """
    buf = Path(path).read_bytes()
    names: list[str] = []
    for number, wire, s, e in _fields(buf, 0, len(buf)):
        if number != 7 or wire != 2:
            continue
        for gnum, gwire, gs, ge in _fields(buf, s, e):
            if gnum != 1 or gwire != 2:
                continue
            name = ""
            for nnum, nwire, ns, ne in _fields(buf, gs, ge):
                if nnum == 3 and nwire == 2:
                    name = buf[ns:ne].decode("utf-8", "replace")
            names.append(name)
            if len(names) >= count:
                return names
    return names


def graph_normalises_input(path: str | Path) -> bool:
    """insightface's rule: models converted from MXNet carry ``Sub``/``_minus`` and ``Mul``/``_mul``
    nodes among their first 8 nodes and take raw 0-255 pixels; all others take (x - 127.5) / 127.5."""
    names = onnx_first_node_names(path)
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return has_sub and has_mul


class ArcFaceOnnx:
    """An insightface-layout ArcFace ONNX model: input (N, 3, 112, 112) RGB, output (N, D) embedding."""

    def __init__(self, model_path: str | Path, input_norm: str = "auto", threads: int = 1) -> None:
        path = Path(model_path) if model_path else None
        if path is None or not path.is_file():
            what = f"ArcFace model file not found: {model_path!r}" if model_path else "no ArcFace model given"
            raise MetricUnavailable(f"{what}. {ARCFACE_HELP}")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
            raise MetricUnavailable("identity_arcface needs onnxruntime: pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any load failure means an unusable file
            raise MetricUnavailable(f"{path} is not a loadable ONNX model ({exc}). {ARCFACE_HELP}") from exc
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3 or any(
            isinstance(s, int) and s != ARCFACE_SIZE for s in shape[2:]
        ):
            raise MetricUnavailable(
                f"{path} takes input {shape}; an ArcFace model takes (N, 3, 112, 112). {ARCFACE_HELP}"
            )
        self.input_name = inp.name
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        if input_norm == "auto":
            input_norm = "raw" if graph_normalises_input(path) else "insightface"
        if input_norm not in ("insightface", "raw"):
            raise ValueError(f"input_norm must be 'auto', 'insightface' or 'raw', not {input_norm!r}")
        self.input_norm = input_norm
        self.mean, self.std = (127.5, 127.5) if input_norm == "insightface" else (0.0, 1.0)
        self.path = path
        self.sha256 = sha256_file(path)

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB aligned faces -> (N, 3, 112, 112) float32 network input."""
        x = (np.asarray(faces, dtype=np.float32) - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def embed(self, faces: np.ndarray) -> np.ndarray:
        x = self.preprocess(faces)
        if self.fixed_batch == 1:
            outs = [self.session.run(None, {self.input_name: x[i : i + 1]})[0] for i in range(len(x))]
            return np.concatenate(outs).reshape(len(x), -1)
        return self.session.run(None, {self.input_name: x})[0].reshape(len(x), -1)

    def describe(self) -> dict[str, str]:
        """The model file and how faces reach it (for the metric's definition)."""
        return {
            "model_file": self.path.name,
            "input_resolution": f"{ARCFACE_SIZE}x{ARCFACE_SIZE} RGB",
            "input_normalisation": "(x-127.5)/127.5" if self.input_norm == "insightface" else "raw 0-255",
            "face_alignment": ("similarity (Umeyama) of eye centres, nose tip, mouth corners to ArcFace "
                               "template"),
        }

    def embed_images(self, images: list[np.ndarray], points: list[np.ndarray]) -> np.ndarray:
        faces = np.stack([align_arcface(img, pts) for img, pts in zip(images, points, strict=True)])
        return self.embed(faces)


# --------------------------------------------------------------------------- dlib ResNet descriptor


class DlibDescriptor:
    """dlib's 128-d ResNet face descriptor on 150x150 face chips (padding 0.25) from the 68 points."""

    chip_size = 150
    padding = 0.25

    def __init__(self) -> None:
        import dlib

        from talkface.core.landmarks.dlib_models import dlib_model_path

        try:
            path = dlib_model_path("face_descriptor")
        except FileNotFoundError as exc:
            raise MetricUnavailable(str(exc)) from exc
        self._dlib = dlib
        self.model = dlib.face_recognition_model_v1(str(path))
        self.path = path
        self.sha256 = sha256_file(path)

    def describe(self) -> dict[str, str]:
        """The model file and how faces reach it (for the metric's definition)."""
        return {"model_file": self.path.name,
                "input_resolution": f"{self.chip_size}x{self.chip_size} RGB chip, padding {self.padding}",
                "face_alignment": "dlib.get_face_chip from the 68 landmarks"}

    def chip(self, image: np.ndarray, points68: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        pts = np.asarray(points68, dtype=np.float64)
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        rect = dlib.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        img = np.ascontiguousarray(image, dtype=np.uint8)
        return dlib.get_face_chip(img, shape, size=self.chip_size, padding=self.padding)

    def embed_images(self, images: list[np.ndarray], points: list[np.ndarray]) -> np.ndarray:
        chips = [self.chip(img, pts) for img, pts in zip(images, points, strict=True)]
        if not chips:
            return np.zeros((0, 128), dtype=np.float32)
        desc = self.model.compute_face_descriptor(chips)
        return np.asarray([np.asarray(d) for d in desc], dtype=np.float32)


# --------------------------------------------------------------------------- metrics


def _valid(points: np.ndarray | None) -> bool:
    return points is not None and bool(np.isfinite(points).all())


class _IdentityMetric(Metric):
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"identity_image", "landmarks"})
    default_step: ClassVar[int] = 1
    measure: str = "cosine"  # or "euclidean"

    def compare(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return identity_euclidean(a, b) if self.measure == "euclidean" else identity_cosine(a, b)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.frame_step = int(options.get("frame_step", self.default_step))
        if self.frame_step < 1:
            raise ValueError("frame_step must be >= 1")
        self._landmarker = None

    # subclasses provide the embedder
    embedder: Any

    def _identity_points(self, sample: ClipSample) -> np.ndarray | None:
        pts = sample.extras.get("identity_landmarks") if sample.extras else None
        if pts is not None:
            return np.asarray(pts, dtype=np.float64)
        if self._landmarker is None:
            from talkface.core.landmarks import get_landmark_backend

            self._landmarker = get_landmark_backend("dlib")
        return self._landmarker.detect(sample.identity_image)

    def score(self, sample: ClipSample) -> MetricResult:
        id_pts = self._identity_points(sample)
        if not _valid(id_pts):
            return MetricResult.failed("no face found in the identity image")
        id_emb = self.embedder.embed_images([sample.identity_image], [id_pts])[0]
        n = len(sample.frames)
        idx = [t for t in range(0, n, self.frame_step) if _valid(sample.landmarks[t])]
        if not idx:
            return MetricResult.failed("no sampled frame has landmarks (no face found)")
        emb = self.embedder.embed_images([sample.frames[t] for t in idx], [sample.landmarks[t] for t in idx])
        per_frame = np.full(n, np.nan)
        per_frame[idx] = self.compare(emb, id_emb[None, :])
        details: dict[str, Any] = {"frame_step": self.frame_step, "n_frames_scored": len(idx)}
        if self.measure == "euclidean":
            details["same_person_share"] = float(np.mean(per_frame[idx] < DLIB_SAME_PERSON))
        if sample.ref_frames is not None and sample.ref_landmarks is not None:
            pairs = [(k, t) for k, t in enumerate(idx) if _valid(sample.ref_landmarks[t])]
            if pairs:
                ref = self.embedder.embed_images(
                    [sample.ref_frames[t] for _, t in pairs], [sample.ref_landmarks[t] for _, t in pairs]
                )
                vs_ref = self.compare(emb[[k for k, _ in pairs]], ref)
                details["vs_reference"] = float(np.mean(vs_ref))
                details["ref_vs_identity"] = float(np.mean(self.compare(ref, id_emb[None, :])))
        return MetricResult(value=float(np.nanmean(per_frame)), per_frame=per_frame, details=details)

    @property
    def weights_sha256(self) -> str | None:
        return self.embedder.sha256

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        d["frame_step"] = self.frame_step
        d["measure"] = (
            f"Euclidean distance of descriptors (lower is better; dlib's same-person threshold "
            f"{DLIB_SAME_PERSON})"
            if self.measure == "euclidean"
            else "cosine similarity of embeddings (higher is better)"
        )
        d["identity_landmarks"] = "sample.extras['identity_landmarks'] or talkface's dlib backend"
        d.update(self.embedder.describe())
        return d


@register_metric
class IdentityArcFace(_IdentityMetric):
    """Cosine of ArcFace embeddings, generated frame vs identity image (ONNX model given by path)."""

    name: ClassVar[str] = "identity_arcface"
    doc: ClassVar[str] = (
        "cosine similarity of ArcFace embeddings (5-point aligned 112x112), "
        "generated frames vs identity image"
    )
    reference: ClassVar[str] = "Deng et al., ArcFace, CVPR 2019; insightface model layout"
    accepted_options: ClassVar[frozenset[str]] = frozenset({"arcface_model", "frame_step", "input_norm"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.embedder = ArcFaceOnnx(options.get("arcface_model"), options.get("input_norm", "auto"))

    @property
    def variant(self) -> str:
        return f"arcface-{self.embedder.path.stem}-5pt112-{self.embedder.input_norm}-every{self.frame_step}"



@register_metric
class IdentityDlib(_IdentityMetric):
    """dlib ResNet face descriptors, generated frame vs identity image (no download needed):
    Euclidean distance (default, as dlib intends) or cosine similarity."""

    name: ClassVar[str] = "identity_dlib"
    higher_is_better: ClassVar[bool] = False  # the default variant is a distance
    doc: ClassVar[str] = (
        "Euclidean distance of dlib ResNet face descriptors (150x150 chips), generated frames vs "
        "identity image (dlib's same-person threshold 0.6); variant cosine: cosine similarity"
    )
    reference: ClassVar[str] = (
        "dlib dlib_face_recognition_resnet_model_v1 (King 2017), Euclidean, same-person threshold 0.6"
    )
    accepted_options: ClassVar[frozenset[str]] = frozenset({"frame_step", "measure"})
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        "euclidean": {"measure": "euclidean"},
        "cosine": {"measure": "cosine"},
    }
    # The descriptor costs ~100 ms per face on one core; every 5th frame gives 15 faces per GRID clip.
    default_step: ClassVar[int] = 5

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.measure = self.variant_option("measure")
        self.higher_is_better = self.measure == "cosine"  # per instance: the direction follows the variant
        self.embedder = DlibDescriptor()

    @property
    def variant(self) -> str:
        """The variant as typed; a frame step other than the default 5 is appended (``-every<N>``)."""
        step = "" if self.frame_step == self.default_step else f"-every{self.frame_step}"
        return f"{self.measure}{step}"

