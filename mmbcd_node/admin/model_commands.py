"""``model info``: the configured model bundle, its manifest and digest."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ml.manifest import BundleError, default_bundle_path, read_manifest
from mmbcd_node.admin.context import cli_context


def _summary(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    model = manifest.get("model", {})
    text = model.get("text_encoder", {})
    detector = model.get("detector", {})
    external = text.get("external")
    rows = [
        ("name", manifest.get("name")), ("version", manifest.get("version")),
        ("created", manifest.get("created")), ("digest", manifest.get("digest")),
        ("members", f"{model['members']} models of one recipe, view scores averaged"
                    if model.get("members") else "1"),
        ("image encoder", model.get("image_encoder", {}).get("arch")),
        ("text encoder", text.get("id")),
        ("text base", f"{external['location']} (pinned by SHA-256)" if external else "in bundle"),
        ("detector", f"Ultralytics YOLO at {detector.get('imgsz')} px, "
                     f"NMS IoU {detector.get('nms_iou')}"),
        ("ROIs per view (K)", model.get("k")), ("crop", model.get("crop")),
        ("preprocessing", manifest.get("preprocessing")),
        ("operating threshold", manifest.get("threshold")),
        ("text context", text.get("context", "none")),
        ("calibration", (f"{manifest['calibration']['view']['method']}, "
                         f"{manifest['calibration']['fitted_on']}")
         if manifest.get("calibration") else "none (raw scores)"),
        *((f"operating point ({level})", f"{point['threshold']:.4f} at {point['target']} "
           f"({point.get('reached', '')})")
          for level, point in (manifest.get("operating_points") or {}).items()),
        ("training data", manifest.get("training_data")),
        ("files", len(manifest.get("files", {}))), ("notes", manifest.get("notes")),
    ]
    return [(key, json.dumps(v) if isinstance(v, dict) else str(v)) for key, v in rows]


def register(app: typer.Typer) -> None:
    model = typer.Typer(help="The model bundle.", no_args_is_help=True)
    app.add_typer(model, name="model")

    @model.command("info")
    def info(ctx: typer.Context,
             as_json: bool = typer.Option(False, "--json", help="Print the whole manifest "
                                          "as JSON.")) -> None:
        """Verify the configured bundle (every file digest) and print its manifest.

        Exit code 1 when the bundle is missing, incomplete or altered.
        """
        configured = cli_context(ctx).config.model.bundle
        path = configured or default_bundle_path()
        try:
            manifest = read_manifest(path, verify=True)
        except BundleError as exc:
            typer.echo(f"model bundle refused: {exc}", err=True)
            raise typer.Exit(1) from None
        if as_json:
            typer.echo(json.dumps({"path": str(path), "packaged": configured is None,
                                   **manifest}, indent=2))
            return
        table = Table(title=f"model bundle {path}", show_header=False)
        table.add_column("key", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in _summary(manifest):
            table.add_row(key, value)
        Console().print(table)
