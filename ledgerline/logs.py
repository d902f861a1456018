"""Structured JSON log lines, each with the request id of the request being served (if any).

Every line on standard error is one of these: uvicorn's and Litestar's loggers propagate to the
root's JSON handler (they get none of their own), Python warnings go through ``logging``, and an
exception nobody caught (main thread or another) is logged, not printed as a bare traceback.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import msgspec

from domain.audit import current_audit_context

# What every LogRecord has: anything else on a record came from ``extra=`` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message",  # uvicorn's copy of the message with terminal colours
}  # fmt: skip


def _plain(value: Any) -> Any:
    """Fields keep their JSON type (numbers as numbers); anything msgspec cannot encode is text."""
    return str(value)


_encoder = msgspec.json.Encoder(enc_hook=_plain)  # C, and UTF-8 as it is


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_audit_context().request_id
        if request_id:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        try:
            return _encoder.encode(line).decode()
        except (TypeError, ValueError, OverflowError):  # e.g. a key that is not text
            return _encoder.encode({k: str(v) for k, v in line.items()}).decode()


def configure(level: int | str = logging.INFO, *, access: bool = True) -> None:
    """JSON lines on standard error at ``level`` (a number or ``LEDGERLINE_LOG_LEVEL``'s name);
    ``access``: one line per request (``ledgerline.access``)."""
    logging._srcfile = None  # no caller lookup per record (the logging HOWTO's optimisation)
    logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        logger = logging.getLogger(name)  # through the root's JSON handler, nothing of their own
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for noisy in ("uvicorn.access", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # requests are logged by the API itself
    logging.getLogger("ledgerline.access").setLevel(logging.INFO if access else logging.WARNING)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("ledgerline").critical("uncaught %s", kind.__name__, exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    thread = args.thread.name if args.thread else "?"
    logging.getLogger("ledgerline").error(
        "uncaught %s in thread %s", args.exc_type.__name__, thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )  # fmt: skip
