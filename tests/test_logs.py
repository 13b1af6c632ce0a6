"""monitor/logs.py: one line per event, and no secret in it whatever characters it holds."""

from __future__ import annotations

import io
import json
import logging

import pytest

from monitor import logs


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_secrets_with_quotes_and_backslashes_are_masked(fmt: str) -> None:
    secret = 'pa"ss\\word-77'
    logs.register_secrets([secret])
    stream = io.StringIO()
    logs.setup_logging(fmt, "info", stream)
    try:
        log = logging.getLogger("camnet.test")
        logs.event(log, logging.WARNING, f"login with {secret} failed", error=f"rejected {secret}",
                   url=f"rtsp://admin:{secret}@127.0.0.9/x", count=3)
    finally:
        logs.register_secrets([])
        logs.setup_logging("logfmt", "info")
    line = stream.getvalue()
    escaped = json.dumps(secret)[1:-1]  # how JSON and logfmt write it: pa\"ss\\word-77
    assert secret not in line and escaped not in line and "word-77" not in line, line
    assert line.count(logs.SECRET_MASK) == 3 and line.count("\n") == 1, line
    if fmt == "json":
        assert json.loads(line)["count"] == 3
    else:
        assert " count=3" in line


def test_logfmt_escapes_control_characters_of_device_text() -> None:
    """A device's text (a SOAP fault with CRLF, an escape sequence) stays one printable line:
    journald shows a line with a control character as a blob, and a raw CR lets the text
    overwrite what a terminal shows of the line."""
    stream = io.StringIO()
    logs.setup_logging("logfmt", "info", stream)
    try:
        logs.event(logging.getLogger("camnet.test"), logging.WARNING, "device down",
                   message='not authorized\r\nlevel=info msg="device recovered"\r',
                   model="cam\x1b[2J\t1")
    finally:
        logs.setup_logging("logfmt", "info")
    line = stream.getvalue()
    assert line.endswith("\n") and not any(ord(c) < 0x20 for c in line[:-1]), repr(line)
    assert 'message="not authorized\\r\\nlevel=info msg=\\"device recovered\\"\\r"' in line
    assert 'model="cam\\u001b[2J\\t1"' in line
