"""lab/capture_docs.py: how captured output replaces the console blocks of docs/probe.md."""

from __future__ import annotations

import re

from lab import capture_docs


def test_fill_replaces_blocks_cuts_long_ones_and_keeps_unknown_ones() -> None:
    doc = ("intro\n<!-- out:short -->\n```console\nold\n```\n"
           "<!-- out:long head=2 tail=1 -->\n```console\nold\n```\n"
           "<!-- out:other -->\n```console\nkept\n```\n")
    outputs = {"short": "$ camnet a\nline\n", "long": "\n".join(f"l{i}" for i in range(6))}
    page, missing = capture_docs.fill(doc, outputs)
    assert page == ("intro\n<!-- out:short -->\n```console\n$ camnet a\nline\n```\n"
                    "<!-- out:long head=2 tail=1 -->\n```console\nl0\nl1\n…\nl5\n```\n"
                    "<!-- out:other -->\n```console\nkept\n```\n")
    assert missing == ["other"]


def test_every_example_of_the_page_is_captured_by_some_group() -> None:
    page = capture_docs.DOC.read_text(encoding="utf-8")
    wanted = set(re.findall(r"<!-- out:(\w+)", page))
    source = capture_docs.__loader__.get_source(capture_docs.__name__)  # type: ignore[union-attr]
    made = set(re.findall(r'"(\w+)"', source or ""))
    made |= {f"cam_{f}{s}" for f in ("black", "hang") for s in ("", "_vi")}
    made |= {f"cam_wrongpw{s}" for s in ("", "_vi")}
    assert wanted <= made, wanted - made
