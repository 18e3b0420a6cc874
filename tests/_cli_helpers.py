"""Calling the ``automl`` CLI in-process from a test."""

from __future__ import annotations

from automl.cli import main


def run_cli(args, capsys):
    """``(exit code, stdout, stderr)`` of ``automl ARGS`` run in this process."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_steps(*commands) -> None:
    """Run ``automl`` commands in order (a fixture's setup); each must exit 0."""
    for args in commands:
        try:
            main(args)
        except SystemExit as exc:
            assert exc.code in (0, None), (args, exc.code)
