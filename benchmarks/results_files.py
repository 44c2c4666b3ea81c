"""The two files a benchmark run leaves: ``OUT.json`` (its payload) and ``OUT.md`` (its table)."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(out: Path | str, payload: dict, text: str) -> None:
    """Write ``payload`` to ``OUT.json`` (indented, newline-terminated) and ``text`` to ``OUT.md``, making the
    folder ``out`` is in."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
