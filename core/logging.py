"""Structured JSON logs, one line per record, with secrets redacted.

Records are stamped with the request context (request id, user id) in the thread that logs them,
then handed through a queue to a listener thread that formats, redacts and writes them to stdout
and to a rotating file: the event loop never waits on log I/O.
"""

from __future__ import annotations

import atexit
import contextvars
import copy
import json
import logging
import logging.handlers
import queue
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import Settings

# JSON leaves these unescaped, but line readers (Python's splitlines, some log shippers) end a
# line at them: a value a client chose (a path, a name) must not split or forge a log line.
_LINE_BREAKS_ESCAPED = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


@dataclass
class RequestContext:
    """Mutable on purpose: dependencies fill in `user_id` once the caller is authenticated."""

    request_id: str
    user_id: str | None = None


_request_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "hivesync_request_context", default=None
)


def bind_request_context(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _request_context.set(context)


def reset_request_context(token: contextvars.Token[RequestContext | None]) -> None:
    _request_context.reset(token)


def current_request_context() -> RequestContext | None:
    return _request_context.get()


REDACTED = "[REDACTED]"
SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|access[_-]?key|authorization|cookie|credential",
    re.IGNORECASE,
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON Web Tokens (header.payload.signature)
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[REDACTED_JWT]"),
    # Authorization header values (credentials are long: "preview logs" in prose is not one)
    (
        re.compile(r"\b(Bearer|Preview|Basic)\s+[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE),
        r"\1 " + REDACTED,
    ),
    # key=value and "key": "value" pairs whose key names a secret
    (
        re.compile(
            r"""(["']?[A-Za-z_-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|access[_-]?key)"""
            r"""[A-Za-z_-]*["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,&;}\]]+)""",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # bcrypt hashes
    (re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"), "[REDACTED_HASH]"),
    # credentials inside URLs
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)


class Redactor:
    """Masks secrets in log text: known shapes (JWTs, bearer tokens, key=value pairs, bcrypt
    hashes, URL passwords) and the literal values of every configured secret."""

    def __init__(self, secret_values: list[str] | None = None) -> None:
        # Longest first, so that a secret containing another is masked whole.
        self._secret_values = sorted(set(secret_values or []), key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secret_values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def value(self, key: str, value: Any) -> Any:
        if SENSITIVE_KEY.search(key):
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {str(k): self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(key, item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(str(value))


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn: the message again, with terminal colours
    "user_id",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, redactor: Redactor) -> None:
        super().__init__()
        self.service = service
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
            "user_id": getattr(record, "user_id", None),
            "message": self.redactor.text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = self.redactor.value(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = self.redactor.text(record.exc_text)
        return json.dumps(entry, default=str, ensure_ascii=False).translate(_LINE_BREAKS_ESCAPED)


class _ContextQueueHandler(logging.handlers.QueueHandler):
    """Enqueues records stamped with the caller's request context and with their message and
    traceback already rendered (the objects they refer to may change once the call returns)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        context = current_request_context()
        record.request_id = context.request_id if context else None
        record.user_id = context.user_id if context else None
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


_state: dict[str, Any] = {}


def configure_logging(settings: Settings, service: str | None = None) -> None:
    """Route the root logger (uvicorn's loggers included) to JSON on stdout and a rotating file.

    Safe to call more than once: the previous handler and listener are replaced.
    """
    shutdown_logging()
    service = service or settings.service_name
    formatter = JsonFormatter(service, Redactor(settings.secret_values()))

    stdout_handler = logging.StreamHandler(sys.stdout)
    stdout_handler.setFormatter(formatter)
    handlers: list[logging.Handler] = [stdout_handler]
    if settings.log_to_file:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            Path(settings.log_dir) / f"{service}.log",
            maxBytes=settings.log_file_max_bytes,
            backupCount=settings.log_file_backups,
            encoding="utf-8",
        )
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)

    log_queue: queue.Queue[logging.LogRecord] = queue.Queue(-1)
    listener = logging.handlers.QueueListener(log_queue, *handlers, respect_handler_level=True)
    queue_handler = _ContextQueueHandler(log_queue)

    root = logging.getLogger()
    root.addHandler(queue_handler)
    root.setLevel(settings.log_level)
    # uvicorn's own loggers go through ours; its access log is replaced by the request middleware.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    listener.start()
    if not _state.get("atexit_registered"):
        atexit.register(shutdown_logging)
        _state["atexit_registered"] = True
    _state.update(listener=listener, handler=queue_handler, queue=log_queue, outputs=handlers)


def flush_logging() -> None:
    """Wait until every queued record is written (tests and shutdown)."""
    log_queue = _state.get("queue")
    if log_queue is not None:
        log_queue.join()
        for handler in _state.get("outputs", []):
            handler.flush()


def shutdown_logging() -> None:
    """Write out queued records and detach the handlers."""
    listener = _state.pop("listener", None)
    handler = _state.pop("handler", None)
    if handler is not None:
        logging.getLogger().removeHandler(handler)
    if listener is not None:
        listener.stop()
    for output in _state.pop("outputs", []):
        output.close()
    _state.pop("queue", None)
