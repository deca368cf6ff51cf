"""The ``mmbcd-node`` console script: serve the node and administer it.

Exit codes: 0 success, 1 a check failed, 2 usage or configuration error.
"""

from __future__ import annotations

from pathlib import Path

import typer

from mmbcd_node.admin import (
    db_commands,
    demo_command,
    job_commands,
    model_commands,
    ops_commands,
    order_commands,
    result_commands,
    serve_command,
    study_commands,
)
from mmbcd_node.admin.context import CliContext

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="mmbcd-node: DICOM/HL7 node for the MMBCD breast cancer model.")


@app.callback()
def _root(ctx: typer.Context,
          config: Path | None = typer.Option(None, "--config", envvar="MMBCD_NODE_CONFIG",
                                             help="TOML configuration file.")) -> None:
    ctx.obj = CliContext(config_path=config)


for module in (db_commands, serve_command, study_commands, ops_commands, order_commands,
               model_commands, job_commands,
               result_commands, demo_command):
    module.register(app)


def main() -> None:
    app()
