"""The MMBCD model library: DICOM views and clinical history in, malignancy scores out.

Importable without the node service (``ml`` never imports ``mmbcd_node``). Heavy
dependencies (torch, transformers, ultralytics) load only when a model is built.
"""

from ml.types import RoiPrediction, StudyInput, StudyPrediction, ViewInput, ViewPrediction

__all__ = ["RoiPrediction", "StudyInput", "StudyPrediction", "ViewInput", "ViewPrediction"]
