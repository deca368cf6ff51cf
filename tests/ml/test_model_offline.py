"""Ultralytics and Hugging Face make no network attempt when a bundle is loaded and run."""

from __future__ import annotations

import socket

import pytest
from pydicom.uid import generate_uid

from ml.offline import configure_ultralytics
from ml.types import StudyInput, ViewInput
from tests.support.mammo import make_mammogram


@pytest.fixture
def network_attempts(monkeypatch):
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_ultralytics_is_configured_offline_with_a_local_font_and_no_integrations(tmp_path):
    folder = configure_ultralytics()
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR
    from ultralytics.utils.checks import check_font

    assert folder / "Ultralytics" == USER_CONFIG_DIR
    assert (folder / "Ultralytics" / "Arial.ttf").stat().st_size > 100_000
    assert check_font("Arial.ttf") == folder / "Ultralytics" / "Arial.ttf"
    for key in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "wandb"):
        assert SETTINGS[key] is False, key


def test_loading_and_running_the_default_bundle_makes_no_network_attempt(network_attempts):
    from ml.pipeline import Pipeline

    pipeline = Pipeline(None, device="cpu")
    ds = make_mammogram(rows=256, cols=208)
    [prediction] = pipeline.predict([StudyInput(generate_uid(),
                                                [ViewInput(ds, ds.SOPInstanceUID)], "lump")])
    assert prediction.views[0].error is None
    assert network_attempts == []
