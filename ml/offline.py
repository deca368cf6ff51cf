"""Ultralytics without the network: call ``configure_ultralytics()`` before importing it.

Ultralytics reaches out on its own in several places: settings sync and telemetry,
integrations (Comet, ClearML, MLflow, ...), the font used by dataset checks and plots
(``Arial.ttf`` is fetched when missing from its config folder), and the AMP check, which
downloads a model. A hospital node must make no such attempt, so this module sets
``YOLO_OFFLINE``, points ``YOLO_CONFIG_DIR`` at a project folder, places a free TTF font
there under the name Ultralytics looks for, and turns every integration off. Training
code must also pass ``amp=False`` (or train in bf16 on a GPU) to skip the AMP check.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

_FONT = Path(__file__).parent / "fonts" / "DejaVuSans.ttf"
# Every Ultralytics setting that enables a network integration or a remote message.
_OFF = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb",
        "vscode_msg", "openvino_msg", "hub", "neptune")
_configured: Path | None = None
log = logging.getLogger(__name__)


def default_config_dir() -> Path:
    """``$YOLO_CONFIG_DIR`` when set (the Makefile sets ``var/ultralytics``), else a
    folder under ``$XDG_CACHE_HOME`` (``~/.cache``) owned by this project."""
    if env := os.environ.get("YOLO_CONFIG_DIR"):
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "mmbcd-node" / "ultralytics"


def configure_ultralytics(config_dir: Path | None = None) -> Path:
    """Make Ultralytics work offline; returns the config folder in use.

    Must run before ``ultralytics`` is first imported (it reads ``YOLO_CONFIG_DIR`` at
    import). Idempotent. If Ultralytics was imported earlier, its folder is used instead
    (and returned): the font and settings go where it already looks.
    """
    global _configured
    if _configured is not None and (config_dir is None or config_dir.resolve() == _configured):
        return _configured
    folder = (config_dir or default_config_dir()).resolve()
    os.environ["YOLO_OFFLINE"] = "1"
    if "ultralytics" in sys.modules:
        # Imported earlier (by other code) with its own folder: make that folder safe too.
        from ultralytics.utils import USER_CONFIG_DIR
        folder = Path(USER_CONFIG_DIR).resolve().parent
        log.warning("event=ultralytics_imported_before_offline_setup config_dir=%s", folder)
    else:
        os.environ["YOLO_CONFIG_DIR"] = str(folder)
    user_dir = folder / "Ultralytics"  # Ultralytics appends this sub-folder itself
    user_dir.mkdir(parents=True, exist_ok=True)
    font = user_dir / "Arial.ttf"
    if not font.exists():
        shutil.copyfile(_FONT, font)
    from ultralytics.utils import SETTINGS

    changes = {key: False for key in _OFF if key in SETTINGS and SETTINGS[key] is not False}
    if changes:
        SETTINGS.update(changes)
    _configured = folder
    return folder
