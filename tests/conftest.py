"""Shared fixtures. Each stage of the node keeps its fixtures in tests/support/."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

pytest_plugins = [
    "tests.support.databases",
    "tests.support.node",
    "tests.support.pacs",
    "tests.support.ris",
    "tests.support.predictions",
]
