"""User-facing errors.

Anything a user can cause (a bad spec, a malformed schema, a missing dataset) raises
:class:`AutomlError` with one line that names the file, the key and what is allowed. The CLI prints
that line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


#: exit statuses of the ``automl`` command (README, "Running searches"); one place, so that the CLI and
#: the search summary's ``exit_code`` agree
EXIT_OK = 0
#: a search in which no trial produced a value, or that ``--max-failures`` stopped; an unexpected error
EXIT_SEARCH_FAILED = 1
#: bad input (spec, override, option, schema): one line on stderr, nothing written
EXIT_BAD_INPUT = 2
#: the search found a winner but evaluating or exporting it failed
EXIT_PROMOTION_FAILED = 3
#: Ctrl-C / SIGINT (128 + 2, the shell's convention)
EXIT_INTERRUPTED = 130


class AutomlError(Exception):
    """An error caused by the user's input, reported as a single line."""


class SchemaError(AutomlError):
    """A train schema that does not follow the dialect."""


class SpecError(AutomlError):
    """A spec file or override that does not match the model's schema."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    if not close:
        # Dotted names: compare the last component too, so 'lr' finds 'train.optim.lr'.
        tail = name.rsplit(".", 1)[-1]
        by_tail = {c.rsplit(".", 1)[-1]: c for c in candidates}
        close = [by_tail[m] for m in difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.6)]
    return f" (did you mean '{close[0]}'?)" if close else ""
