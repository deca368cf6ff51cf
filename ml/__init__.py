"""The MMBCD model library: DICOM views and clinical history in, malignancy scores out.

Importable without the node service (``ml`` never imports ``mmbcd_node``). Heavy
dependencies (torch, transformers, ultralytics) load only when a model is built.
"""

from ml.types import RoiPrediction, StudyInput, StudyPrediction, ViewInput, ViewPrediction

__all__ = ["Pipeline", "RoiPrediction", "StudyInput", "StudyPrediction", "ViewInput",
           "ViewPrediction", "default_bundle_path", "load_bundle"]

_LAZY = {"Pipeline": "ml.pipeline", "load_bundle": "ml.bundle",
         "default_bundle_path": "ml.manifest"}


def __getattr__(name: str) -> object:
    # torch and friends load only when the model itself is asked for
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ml' has no attribute {name!r}")
