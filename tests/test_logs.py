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
