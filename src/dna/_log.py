"""Logging for the ``dna`` command: text or JSON lines on stderr, control characters escaped.

The library itself only names its loggers (``dna.node``, ``dna.cluster``,
``dna.transport``, ``dna.store.*``) and adds a ``NullHandler`` to ``dna``;
configuring handlers is the application's business. ``dna node`` calls
``configure()``.

Text that peers control (node ids, addresses, actor keys, exception messages)
may hold newlines or terminal escapes; ``EscapeControl`` rewrites every
record's message so one record is always one line, and no byte of it can
move a terminal's cursor.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

__all__ = ["LEVELS", "EscapeControl", "JSONFormatter", "configure", "escape"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# C0 controls, DEL and the C1 range (a lone 0x9b is a CSI on some terminals)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# the same, but tracebacks keep their line breaks (each line is escaped by itself)
_CONTROL_KEEP_LINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _replace(m: re.Match[str]) -> str:
    c = m.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or f"\\x{ord(c):02x}"


def escape(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as a visible escape (``\\n``, ``\\x1b``)."""
    return (_CONTROL_KEEP_LINES if keep_newlines else _CONTROL).sub(_replace, text)


class EscapeControl(logging.Filter):
    """Escapes control characters in each record's message (args merged in first), and in
    its exception text except for the traceback's own line breaks. Install it on a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad format string must not lose the record
            message = f"{record.msg!r} (cannot format: {exc!r})"
        record.msg = escape(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escape(record.exc_text, keep_newlines=True)
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, and ``exc`` (the formatted traceback) when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        exc = record.exc_text
        if record.exc_info and not exc:
            exc = self.formatException(record.exc_info)
        if exc:
            out["exc"] = exc
        return json.dumps(out, ensure_ascii=True)


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every ``dna`` (and application) log record at ``level`` or above to
    ``stream`` (stderr) as text lines or JSON lines, control characters escaped."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(EscapeControl())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
