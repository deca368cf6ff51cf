"""``mmbcd-node model info``: the configured bundle's manifest and digest, verified."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from ml.manifest import default_bundle_path, read_manifest
from mmbcd_node.admin.cli import app


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_model_info_json_prints_the_packaged_bundle_manifest_and_digest(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text("[model]\ndevice = \"cpu\"\n")
    result = _run("--config", str(config), "model", "info", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["packaged"] is True
    assert shown["digest"] == read_manifest(default_bundle_path())["digest"]
    assert shown["model"]["k"] == 8


def test_model_info_table_names_the_configured_bundle(tmp_path):
    bundle = shutil.copytree(default_bundle_path(), tmp_path / "site-bundle")
    config = tmp_path / "node.toml"
    config.write_text(f"[model]\nbundle = \"{bundle}\"\n")
    result = _run("--config", str(config), "model", "info")
    assert result.exit_code == 0, result.output
    assert read_manifest(bundle)["digest"][:40] in result.output.replace("\n", "").replace(
        "│", "").replace(" ", "")
    flat = " ".join(result.output.replace("│", " ").split())
    assert "calibration platt, validation split" in flat
    assert "operating point (study)" in flat and "text context side" in flat
    members = read_manifest(bundle)["model"].get("members")
    assert (f"members {members} models of one recipe" if members else "members 1") in flat


def test_model_info_refuses_an_altered_bundle_with_exit_code_1(tmp_path):
    bundle = shutil.copytree(default_bundle_path(), tmp_path / "site-bundle")
    (bundle / "detector.yaml").write_text("nc: 2\n")
    config = tmp_path / "node.toml"
    config.write_text(f"[model]\nbundle = \"{bundle}\"\n")
    result = _run("--config", str(config), "model", "info")
    assert result.exit_code == 1
    assert "detector.yaml" in result.output
