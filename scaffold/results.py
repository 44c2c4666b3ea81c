"""The two files a benchmark run leaves: ``OUT.json`` (its payload) and ``OUT.md`` (its table)."""

from __future__ import annotations

import json
from pathlib import Path


def results_stem(out: Path | str) -> Path:
    """``out`` without a ``.json`` or ``.md`` ending; any other dot in its name is kept (``results/v0.7.40``)."""
    out = Path(out)
    return out.with_suffix("") if out.suffix in (".json", ".md") else out


def write_results(out: Path | str, payload: dict, text: str) -> None:
    """Write ``payload`` to ``OUT.json`` (indented, newline-terminated) and ``text`` to ``OUT.md``, making the
    folder ``out`` is in. ``out`` may end in ``.json`` or ``.md``; any other dot in its name is kept
    (``results/v0.7.40`` writes ``v0.7.40.json``, not ``v0.json``)."""
    out = results_stem(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out.parent / f"{out.name}.md").write_text(text)
