"""The metric interface every talkface metric implements, and the registry that names them.

A metric is a class with a stable ``name``, a direction, the inputs it ``needs`` and a ``variant``
string that goes into every result row, so two numbers computed differently never share a label.
The runner builds one :class:`ClipSample` per clip and calls :meth:`Metric.score` on it.

Learned metrics (identity, LPIPS, SyncNet) live in modules that import heavy or optional packages;
they are imported lazily by the registry, and a module that fails to import is recorded (see
:func:`metric_import_errors`) instead of breaking the other metrics.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from talkface import __version__
from talkface.registry import Registry, UnknownName, parse_name_variant

#: Inputs a metric may declare in ``needs`` (``frames`` and ``fps`` are always present).
KNOWN_NEEDS = frozenset({"ref_frames", "landmarks", "ref_landmarks", "audio", "identity_image"})
#: The needs the runner meets by running the landmark detector (on both sides).
LANDMARK_NEEDS = frozenset({"landmarks", "ref_landmarks"})

#: Modules of ``talkface.evaluate.metrics`` that define metrics, imported on first registry use.
METRIC_MODULES: tuple[str, ...] = ("psnr", "ssim", "cpbd", "lmd", "blinks", "identity", "lpips", "syncnet")

#: Where a known metric name lives, so asking for one metric imports one module (the learned ones pull
#: in torch/onnxruntime, seconds of import time); unknown names fall back to importing all modules.
NAME_MODULES: dict[str, str] = {
    "psnr": "psnr",
    "ssim": "ssim",
    "cpbd": "cpbd",
    "lmd_mouth": "lmd",
    "lmd_face": "lmd",
    "blink_rate": "blinks",
    "blink_duration": "blinks",
    "blink_interval": "blinks",
    "identity_arcface": "identity",
    "identity_dlib": "identity",
    "lpips": "lpips",
    "lse_c": "syncnet",
    "lse_d": "syncnet",
}


@dataclass
class ClipSample:
    """Everything a metric may look at for one clip (the runner fills what it can)."""

    clip_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, generated video
    fps: float
    ref_frames: np.ndarray | None = None  # (T, H, W, 3) uint8 ground truth, same size (runner resizes)
    landmarks: np.ndarray | None = None  # (T, 68, 2) on `frames`, same backend as ref_landmarks
    ref_landmarks: np.ndarray | None = None  # (T, 68, 2) on ref_frames
    audio: np.ndarray | None = None  # mono float32 16 kHz of the generated video (or reference audio)
    identity_image: np.ndarray | None = None  # (H, W, 3) uint8 the identity frame, if known
    extras: dict = field(default_factory=dict)  # anything else


@dataclass
class MetricResult:
    """One clip's score; ``value`` is NaN and ``error`` says why when it cannot be computed."""

    value: float
    per_frame: np.ndarray | None = None
    error: str | None = None
    details: dict = field(default_factory=dict)  # e.g. {"offset": 2} for LSE

    @classmethod
    def failed(cls, error: str, **details: Any) -> MetricResult:
        return cls(value=math.nan, error=error, details=dict(details))


class MetricUnavailable(RuntimeError):
    """Raised by a metric's constructor when it cannot run (weights absent or wrong, package missing).

    The message must say how to fix it (which file, where to get it). The runner skips such metrics
    when they were not asked for by name and fails loudly when they were.
    """


class Metric(ABC):
    """Base class: subclasses set the class attributes and implement :meth:`score`.

    Options (variant choices, model paths) arrive as keyword arguments. ``accepted_options`` names
    the ones a metric understands; :meth:`from_options` drops the rest so the runner can hand every
    metric the same option bag (``arcface_model=...``, ``lpips_weights=...``).
    ``variants`` maps a variant label to the options that select it (for ``metrics list`` and
    ``--metrics name:variant``); the first entry is the default.
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool | None]  # None: no better direction, compare with the reference
    needs: ClassVar[frozenset[str]] = frozenset()
    doc: ClassVar[str] = ""  # one line: what it measures
    reference: ClassVar[str] = ""  # paper or package it follows
    accepted_options: ClassVar[frozenset[str]] = frozenset()
    variants: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.accepted_options)
        if unknown:
            raise TypeError(
                f"metric {self.name!r} got unknown option(s) {sorted(unknown)}; "
                f"it accepts {sorted(self.accepted_options)}"
            )
        self.options: dict[str, Any] = dict(options)
        #: Facts about the run the runner knows and the metric does not (detector, crop resolution).
        self.run_context: dict[str, Any] = {}

    @classmethod
    def from_options(cls, **all_options: Any) -> Metric:
        """Build the metric from a shared option bag, keeping only the options it accepts."""
        return cls(**{k: v for k, v in all_options.items() if k in cls.accepted_options and v is not None})

    def variant_option(self, option: str) -> str:
        """The value of an option that selects a variant: one of the values ``variants`` give it, the
        first variant's when the option is not given (a ValueError naming the choices otherwise)."""
        choices = list(dict.fromkeys(str(v[option]) for v in self.variants.values() if option in v))
        value = str(self.options.get(option, choices[0]))
        if value not in choices:
            raise ValueError(f"{self.name} {option} must be one of {choices}, got {value!r}")
        return value

    @property
    def variant(self) -> str:
        """The variant label written into results (e.g. ``gaussian11-colour-range255``)."""
        return "default"

    @property
    def weights_sha256(self) -> str | None:
        """SHA-256 of the model file used, or None for weight-free metrics."""
        return None

    @property
    def direction(self) -> str:
        if self.higher_is_better is None:
            return "closer to reference"
        return "higher is better" if self.higher_is_better else "lower is better"

    def definition(self) -> dict[str, Any]:
        """Everything needed to reproduce or cite the number: goes into ``summary.json``."""
        uses_landmarks = bool(self.needs & LANDMARK_NEEDS)
        return {
            "name": self.name,
            "variant": self.variant,
            "higher_is_better": self.higher_is_better,
            "direction": self.direction,
            "needs": sorted(self.needs),
            "resolution": self.run_context.get(
                "resolution", "as given (the runner resizes generated frames to the reference crop size)"
            ),
            "detector": self.run_context.get("detector") if uses_landmarks else None,
            "weights_sha256": self.weights_sha256,
            "talkface_version": __version__,
            "doc": self.doc,
            "reference": self.reference,
            "options": {k: str(v) for k, v in sorted(self.options.items())},
        }

    def missing_needs(self, sample: ClipSample) -> list[str]:
        """Names of the declared inputs that ``sample`` lacks (the runner records them as errors)."""
        return sorted(n for n in self.needs if getattr(sample, n, None) is None)

    def __call__(self, sample: ClipSample) -> MetricResult:
        """Score with the needs checked and any exception turned into a recorded failure."""
        missing = self.missing_needs(sample)
        if missing:
            return MetricResult.failed(f"missing input(s): {', '.join(missing)}")
        try:
            return self.score(sample)
        except Exception as exc:  # noqa: BLE001 - one bad clip must not stop a run
            return MetricResult.failed(f"{type(exc).__name__}: {exc}")

    @abstractmethod
    def score(self, sample: ClipSample) -> MetricResult:
        """Score one clip."""


#: Every metric class by name; known names are lazy members naming their module, so asking for one
#: metric imports one module (the learned ones pull in torch/onnxruntime: seconds of import time).
METRICS: Registry[type[Metric]] = Registry("metric")
for _name, _module in NAME_MODULES.items():
    METRICS.register_lazy(_name, f"{__package__}.{_module}")
_IMPORT_ERRORS: dict[str, str] = {}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: make ``cls`` available by ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} has no `name`")
    bad = set(cls.needs) - KNOWN_NEEDS
    if bad:
        raise TypeError(
            f"{cls.__name__}.needs has unknown input(s) {sorted(bad)}; known: {sorted(KNOWN_NEEDS)}"
        )
    return METRICS.register(cls.name)(cls)  # a second class under one name is a ValueError


def _import(module: str) -> bool:
    """Import one metric module; a failure is recorded (see :func:`metric_import_errors`), not raised."""
    if module in _IMPORT_ERRORS:
        return False
    try:
        importlib.import_module(f"{__package__}.{module}")
    except Exception as exc:  # noqa: BLE001 - optional backends must not break the others
        _IMPORT_ERRORS[module] = f"{type(exc).__name__}: {exc}"
        return False
    return True


def load_metric_modules() -> None:
    """Import every metric module once; a module that fails is recorded, not raised."""
    for module in METRIC_MODULES:
        _import(module)


def metric_import_errors() -> dict[str, str]:
    """Metric modules that could not be imported, with the reason (shown by ``metrics list``)."""
    load_metric_modules()
    return dict(_IMPORT_ERRORS)


def available_metrics() -> list[type[Metric]]:
    """All metric classes that could be imported, sorted by name."""
    load_metric_modules()
    found = []
    for name in METRICS.names():
        if NAME_MODULES.get(name) in _IMPORT_ERRORS:
            continue
        try:
            found.append(METRICS.get(name))
        except UnknownName:  # a lazy name its module no longer registers
            continue
    return found


def get_metric_class(name: str) -> type[Metric]:
    """The class registered as ``name`` (an :class:`UnknownName`, a ``KeyError``, naming the known ones)."""
    module = NAME_MODULES.get(name)
    if module is not None:
        _import(module)
    elif name not in METRICS:
        load_metric_modules()  # a metric registered by a module under another name
    if module in _IMPORT_ERRORS:
        raise UnknownName(
            f"metric {name!r} is unavailable: its module failed to import ({_IMPORT_ERRORS[module]})"
        )
    return METRICS.get(name)


def metric_options(
    spec: str, options: Mapping[str, Any] | None = None, *, shared: bool = False
) -> tuple[type[Metric], dict[str, Any]]:
    """The class and constructor options for ``spec`` (``name`` or ``name:variant``).

    ``name:variant`` is parsed by :func:`talkface.registry.parse_name_variant` and selects the options
    in ``cls.variants[variant]``; an explicit option that contradicts the variant is an error, never
    silently overridden either way. ``shared=True`` treats ``options`` as the runner's shared bag
    (model paths for every metric): options the metric does not accept, and ``None`` values, are dropped.
    """
    name, variant = parse_name_variant(spec)
    cls = get_metric_class(name)
    opts = {
        k: v
        for k, v in (options or {}).items()
        if not shared or (k in cls.accepted_options and v is not None)
    }
    if variant is not None:
        if variant not in cls.variants:
            known = ", ".join(cls.variants) or "none"
            raise UnknownName(f"metric {name!r} has no variant {variant!r}; variants: {known}")
        chosen = cls.variants[variant]
        clash = sorted(k for k in chosen if k in opts and opts[k] != chosen[k])
        if clash:
            raise ValueError(
                f"{spec!r} sets {', '.join(f'{k}={chosen[k]!r}' for k in clash)} but the options say "
                f"{', '.join(f'{k}={opts[k]!r}' for k in clash)}"
            )
        opts.update(chosen)
    return cls, opts


def get_metric(name: str, **options: Any) -> Metric:
    """Build a metric by name. ``name:variant`` picks a named variant (see ``Metric.variants``)."""
    cls, opts = metric_options(name, options)
    return cls(**opts)
