"""Structured JSON log lines, each with the request id of the request being served (if any)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec

from domain.audit import current_audit_context

_encoder = msgspec.json.Encoder()  # C, and UTF-8 as it is (json.dumps with ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_audit_context().request_id
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def configure(level: int = logging.INFO, *, access: bool = True) -> None:
    """JSON lines on standard error; ``access``: one line per request (``ledgerline.access``)."""
    logging._srcfile = None  # no caller lookup per record (the logging HOWTO's optimisation)
    logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # requests are logged by the API itself
    logging.getLogger("ledgerline.access").setLevel(logging.INFO if access else logging.WARNING)
