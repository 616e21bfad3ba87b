"""talkface metrics: classes (named, with variants) and their functional twins.

Functional twins are importable from here, e.g. ``talkface.evaluate.metrics.cpbd(gray)``,
``psnr(a, b)``, ``ssim(a, b)``, ``lmd(pred, ref)``, ``detect_blinks(ear, fps)``, and the learned
``identity_cosine``, ``lpips``, ``lse`` (imported on first use, so a missing optional package or
weight file never breaks the others). Several twins share their module's name (``cpbd``, ``psnr``,
``ssim``, ``lmd``, ``lpips``): the attribute here is always the function; import the module's other
names with ``from talkface.evaluate.metrics.cpbd import ...``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from talkface.evaluate.metrics.base import (
    METRICS,
    ClipSample,
    Metric,
    MetricResult,
    MetricUnavailable,
    available_metrics,
    get_metric,
    get_metric_class,
    metric_import_errors,
    metric_options,
    register_metric,
)

#: Functional twin -> module that defines it.
FUNCTIONAL_TWINS: dict[str, str] = {
    "psnr": "psnr",
    "ssim": "ssim",
    "cpbd": "cpbd",
    "lmd": "lmd",
    "eye_aspect_ratio": "blinks",
    "detect_blinks": "blinks",
    "identity_cosine": "identity",
    "lpips": "lpips",
    "lse": "syncnet",
}


class _MetricsPackage(types.ModuleType):
    """Keeps ``metrics.<twin>`` the function even after the same-named submodule is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and FUNCTIONAL_TWINS.get(name) == name:
            fn = getattr(value, name, None)
            if callable(fn):
                value = fn
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _MetricsPackage


def __getattr__(name: str) -> Any:
    module = FUNCTIONAL_TWINS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(f"{__name__}.{module}")
    fn = getattr(mod, name)
    globals()[name] = fn
    return fn


__all__ = [
    "METRICS",
    "ClipSample",
    "Metric",
    "MetricResult",
    "MetricUnavailable",
    "available_metrics",
    "get_metric",
    "get_metric_class",
    "metric_import_errors",
    "metric_options",
    "register_metric",
    *FUNCTIONAL_TWINS,
]
