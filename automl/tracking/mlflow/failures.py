"""Which MLflow failures the spool retries (the store is away) and which it gives up on (the request is
wrong), and the one-line reason a user is told."""

from __future__ import annotations

# MLflow's defaults (120 s timeout, 7 retries with exponential backoff) would hold a trial's events
# for many minutes on a dead server; the spool retries for us, so fail fast. A user's setting wins.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # MLflow prints "View run ... at: URL" on stdout for every run it ends on a server: it would
    # interleave with the search's progress display and break `--json` output.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# Error codes that mean "this request is wrong", not "the store is away": retrying cannot help.
PERMANENT_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                   "BAD_REQUEST", "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED",
                   "ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED"}


def is_transient(exc: BaseException) -> bool:
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                        TimeoutError)):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code not in PERMANENT_CODES
    try:
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.OperationalError):  # "database is locked"
            return True
    except ImportError:
        pass
    return False


def short_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                           ("Name or service not known", "unknown host"), ("Max retries exceeded", "no answer")):
        if needle in text:
            return reason
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"

