"""Logging: one line per event, logfmt or JSON, with every known secret scrubbed on the way out."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

from probes.base import SECRET_MASK, redact_urls

# Control characters are written escaped: journald shows a line holding one (a camera's CRLF
# fault text) as "[N B blob data]", and a raw CR lets device text overwrite a line on a terminal.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_LOGFMT_BARE = re.compile(rf'^[^\s="{_CONTROL}]+$')
_LOGFMT_ESCAPED = re.compile(rf'[\\"{_CONTROL}]')
_LOGFMT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class _SecretSet:
    """The secret values the process knows about (from the config), longest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def replace(self, values: Iterable[str]) -> None:
        # Very short values (e.g. a 1-character test community) would mask unrelated text;
        # they are still never logged deliberately, this is the safety net.
        uniq = {v for v in values if v and len(v) >= 3}
        with self._lock:
            self._values = tuple(sorted(uniq, key=len, reverse=True))

    def values(self) -> tuple[str, ...]:
        return self._values


_SECRETS = _SecretSet()


def register_secrets(values: Iterable[str]) -> None:
    """Tell the redactor which secret values exist (replaces the previous set, e.g. on reload)."""
    _SECRETS.replace(values)


def redact(text: str, extra: Iterable[str] = (), min_length: int = 1) -> str:
    """Remove URL credentials, every registered secret and the `extra` secrets (those at least
    `min_length` long) from a text."""
    for value in (*sorted(extra, key=len, reverse=True), *_SECRETS.values()):
        if len(value) >= min_length and value in text:
            text = text.replace(value, SECRET_MASK)
    # user:password@ (or user@) and user=/password= parameters in any URL never leave.
    return redact_urls(text)


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and _LOGFMT_BARE.match(text):
        return text
    return '"' + _LOGFMT_ESCAPED.sub(_escape_char, text) + '"'


def _escape_char(m: re.Match[str]) -> str:
    char = m.group(0)
    return _LOGFMT_ESCAPES.get(char) or f"\\u{ord(char):04x}"


class EventFormatter(logging.Formatter):
    """Formats a record and its `fields` extra as logfmt or JSON, then redacts secrets."""

    def __init__(self, fmt: str = "logfmt") -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a single line."""
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        # Each value is redacted before it is escaped: a secret holding `"` or `\` is written
        # escaped, and would no longer match afterwards.
        clean = {k: v if v is None or isinstance(v, bool | int | float) else redact(str(v))
                 for k, v in fields.items()}
        if self.json:
            line = json.dumps(clean, ensure_ascii=False, default=str)
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in clean.items())
        return redact(line)


def setup_logging(fmt: str = "logfmt", level: str = "info", stream: TextIO | None = None) -> None:
    """Install the event formatter on the root logger (after `import onvif`, which sets its own)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(EventFormatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that narrate every request at INFO would drown the state changes we log.
    for noisy in ("zeep", "onvif", "aiohttp.access", "httpx", "pysnmp", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log one event with key=value fields."""
    logger.log(level, msg, extra={"fields": fields})
