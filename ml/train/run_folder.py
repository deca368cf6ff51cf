"""A run folder: ``config.json`` (everything needed to repeat the run), ``train.log``
(the structured log lines of the run) and ``metrics.jsonl`` (one line per epoch)."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

CONFIG = "config.json"
LOG = "train.log"
METRICS = "metrics.jsonl"
log = logging.getLogger("ml.train")


class RunFolderError(ValueError):
    """A run folder that is missing, not of the expected kind, or already used."""


class RunFolder:
    """The folder of one training run; ``kind`` is ``detector``, ``fusion``, ``ablation``
    or ``ensemble``."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = Path(path)
        self.kind = kind
        self._handler: logging.Handler | None = None

    @classmethod
    def create(cls, path: Path, kind: str, config: Any, force: bool = False) -> RunFolder:
        """Make the folder and write its config; refuses a used folder unless ``force``."""
        path = Path(path)
        cls.refuse_used(path, force)
        path.mkdir(parents=True, exist_ok=True)
        (path / METRICS).unlink(missing_ok=True)
        settings = (asdict(config) if is_dataclass(config) and not isinstance(config, type)
                    else dict(config))
        document = {"kind": kind, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "settings": settings}
        (path / CONFIG).write_text(json.dumps(document, indent=2, default=str) + "\n")
        run = cls(path, kind)
        run.start_log()
        return run

    @staticmethod
    def refuse_used(path: Path, force: bool) -> None:
        """``RunFolderError`` if ``path`` already holds a run and ``force`` is not given."""
        if (Path(path) / CONFIG).exists() and not force:
            raise RunFolderError(f"{path} already holds a run (use --force to overwrite)")

    @classmethod
    def open(cls, path: Path, kind: str | tuple[str, ...]) -> RunFolder:
        """An existing run of ``kind`` (or of one of several kinds: the run's own kind
        then tells which); ``RunFolderError`` if there is none."""
        config = Path(path) / CONFIG
        if not config.is_file():
            raise RunFolderError(f"{path} is not a run folder (no {CONFIG})")
        found = json.loads(config.read_text()).get("kind")
        kinds = (kind,) if isinstance(kind, str) else kind
        if found not in kinds:
            raise RunFolderError(f"{path} is a {found} run, not a {' or '.join(kinds)} run")
        return cls(Path(path), found)

    @property
    def config(self) -> dict[str, Any]:
        return dict(json.loads((self.path / CONFIG).read_text()))

    def start_log(self) -> None:
        """Copy the ``ml`` loggers' lines into ``train.log`` (INFO and above)."""
        handler = logging.FileHandler(self.path / LOG, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        root = logging.getLogger("ml")
        root.setLevel(logging.INFO)
        root.addHandler(handler)
        self._handler = handler

    def close(self) -> None:
        if self._handler is not None:
            logging.getLogger("ml").removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def record_epoch(self, values: dict[str, Any]) -> None:
        """Append one epoch's metrics to ``metrics.jsonl`` and log them."""
        with (self.path / METRICS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(values) + "\n")
        log.info("event=epoch %s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in values.items()))

    def epochs(self) -> list[dict[str, Any]]:
        file = self.path / METRICS
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line]

    def write_json(self, name: str, value: Any) -> Path:
        target = self.path / name
        target.write_text(json.dumps(value, indent=2, default=str) + "\n")
        return target

    def read_json(self, name: str) -> Any:
        target = self.path / name
        if not target.is_file():
            raise RunFolderError(f"{self.path}: {name} is missing")
        return json.loads(target.read_text())
