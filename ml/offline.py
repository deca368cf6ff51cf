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

import os
import shutil
import sys
from pathlib import Path

_FONT = Path(__file__).parent / "fonts" / "DejaVuSans.ttf"
# Every Ultralytics setting that enables a network integration or a remote message.
_OFF = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb",
        "vscode_msg", "openvino_msg", "hub", "neptune")
_configured: Path | None = None


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
    import). Idempotent. Raises ``RuntimeError`` if Ultralytics was already imported
    with another config folder, since its settings and font would then live elsewhere.
    """
    global _configured
    folder = (config_dir or default_config_dir()).resolve()
    if _configured is not None and _configured == folder:
        return folder
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(folder)
    if "ultralytics" in sys.modules:
        from ultralytics.utils import USER_CONFIG_DIR
        if Path(USER_CONFIG_DIR).resolve().parent != folder:
            raise RuntimeError(f"ultralytics was imported before configure_ultralytics() with "
                               f"config dir {USER_CONFIG_DIR}; import ml.offline first")
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
