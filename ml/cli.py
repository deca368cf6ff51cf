"""The ``mmbcd-train`` console script: make data, train, evaluate and export MMBCD.

Each command lives in its own module with a ``register(app)`` function, listed in
``COMMAND_MODULES``; a module is imported only to register its commands, and heavy
libraries (torch, ultralytics) are imported inside the command functions so that
``mmbcd-train --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "ml.synth.command",
    "ml.site_data.command",
    "ml.train.command",
    "ml.evaluate.command",
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="mmbcd-train: synthetic data, training, evaluation and export of MMBCD.")



@app.callback()
def _root() -> None:
    """Keeps the commands as sub-commands even while only one is registered."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
