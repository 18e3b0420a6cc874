"""The ``automl`` command line.

Each command group lives in its own module and registers itself on :data:`app` when imported; this
module only wires them together and turns :class:`~automl.errors.AutomlError` into one line on stderr
and exit status 2.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

app = typer.Typer(
    name="automl",
    help="Hyperparameter search for TAO-style models: compile train schemas, run searches, train plainly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _root() -> None:
    """Hyperparameter search for TAO-style models."""


# Modules that add commands to `app`. Add yours here (one line) when you create it.
COMMAND_MODULES = (
    "automl.cli.models",
    "automl.cli.data",
    "automl.cli.actions",
    "automl.cli.space",
    "automl.cli.tracking",
    "automl.cli.search",
)


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> None:
    from automl.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_SEARCH_FAILED, AutomlError

    # before torch loads OpenMP: waiting threads sleep instead of spinning (see automl.trials.slots.slot_env)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _load_commands()
    try:
        # non-standalone typer turns Ctrl-C (and typer.Exit) into a returned status instead of exiting
        status = app(args=argv, standalone_mode=False)
        if isinstance(status, int) and not isinstance(status, bool) and status:
            if status == EXIT_INTERRUPTED:
                print("interrupted", file=sys.stderr)
            sys.exit(status)
    except AutomlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        # typer (0.29) raises the exceptions of its own copy of click, not click's
        if isinstance(exc, click.exceptions.ClickException) or (isinstance(exc, typer.TyperException)
                                                                 and hasattr(exc, "format_message")):
            # one line, like every other refusal ("Invalid value for '--budget': 'x' is not a valid integer.")
            print(f"error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        if isinstance(exc, (click.exceptions.Abort, typer.Abort)):
            sys.exit(EXIT_INTERRUPTED)
        if os.environ.get("AUTOML_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc} (set AUTOML_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(EXIT_SEARCH_FAILED)
