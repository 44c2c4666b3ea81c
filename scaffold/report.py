"""``smt report``: a static ``index.html`` a platform lead opens — the cycle as the ledger recorded it.

Figures (matplotlib, PNG beside the page): fleet NE per package across template versions (the incumbents of
every qualification), the technique × package adoption matrix, per-package ΔNE with its interval for each
technique's latest qualification. Tables: the cycle summary and every ledger record. Everything comes from
the ledger (and an optional cycle benchmark JSON), so the page is rebuilt from data at any time.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .ledger import ADOPTION, QUALIFICATION, Ledger, pair_matrix

STATE_COLOURS = {
    "adopted": "#2e7d32",
    "already on": "#1565c0",
    "qualified": "#81c784",
    "opted out": "#9e9e9e",
    "not applicable": "#bdbdbd",
    "rejected": "#e57373",
    "not synced": "#ff9800",
}


def _version_key(v: str):
    try:
        return (0, Version(v))
    except InvalidVersion:
        return (1, v)


def _states(cells: dict[str, dict[str, dict]]) -> dict[str, dict[str, str]]:
    return {t: {p: c["state"] for p, c in row.items()} for t, row in cells.items()}


def cycle_summary(ledger: Ledger) -> dict:
    quals, adoptions = ledger.of_kind(QUALIFICATION), ledger.of_kind(ADOPTION)
    machine = sum(r["machine_seconds"] + r.get("cached_seconds", 0.0) for r in quals)
    machine += sum(r["machine_seconds"] for r in adoptions)
    pairs = sum(s == "adopted" for r in adoptions for s in r["packages"].values())
    return {
        "qualifications": len(quals),
        "accepted": sum(r["decision"] == "accept" for r in quals),
        "rejected": sum(r["decision"] == "reject" for r in quals),
        "adoptions": len(adoptions),
        "pairs_adopted": pairs,
        "machine_hours": machine / 3600,
        "pairs_per_machine_hour": pairs / (machine / 3600) if machine else 0.0,
        "versions": sorted({r["to_version"] for r in adoptions}, key=_version_key),
    }


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ne_by_version(ledger: Ledger, path: Path) -> bool:
    """Mean incumbent valid NE per package at each template version it was qualified at."""
    points: dict[str, dict[str, float]] = {}
    for r in ledger.of_kind(QUALIFICATION):
        for name, res in r["results"].items():
            values = res["incumbent_valid"]
            points.setdefault(name, {})[r["template_version"]] = sum(values) / len(values)
    if not points:
        return False
    plt = _plt()
    versions = sorted({v for p in points.values() for v in p}, key=_version_key)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, by_version in sorted(points.items()):
        xs = [versions.index(v) for v in versions if v in by_version]
        ax.plot(xs, [by_version[versions[x]] for x in xs], marker="o", label=name)
    ax.set_xticks(range(len(versions)), versions)
    ax.set_xlabel("template version")
    ax.set_ylabel("valid NE, incumbent (lower is better)")
    ax.set_title("Fleet NE per package across template versions")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_matrix(cells: dict[str, dict[str, str]], path: Path) -> bool:
    if not cells:
        return False
    plt = _plt()
    from matplotlib.patches import Patch

    techniques = sorted(cells)
    packages = sorted({p for row in cells.values() for p in row})
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(packages), 1.2 + 0.45 * len(techniques)))
    for i, t in enumerate(techniques):
        for j, p in enumerate(packages):
            state = cells[t].get(p)
            ax.add_patch(plt.Rectangle((j, i), 0.95, 0.9, color=STATE_COLOURS.get(state, "#f5f5f5")))
    ax.set_xlim(0, len(packages))
    ax.set_ylim(len(techniques), 0)
    ax.set_xticks([j + 0.47 for j in range(len(packages))], packages, rotation=45, ha="right", fontsize=8)
    ax.set_yticks([i + 0.45 for i in range(len(techniques))], techniques, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Technique × package")
    handles = [Patch(color=c, label=s) for s, c in STATE_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_deltas(ledger: Ledger, path: Path) -> bool:
    """Each technique's latest qualification: per-package ΔNE (valid) with its interval, and the mean."""
    latest: dict[str, dict] = {}
    for r in ledger.of_kind(QUALIFICATION):
        latest[r["technique"]] = r
    if not latest:
        return False
    plt = _plt()
    records = list(latest.values())
    cols = min(3, len(records))
    rows = -(-len(records) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(records) :]:
        ax.axis("off")
    for ax, r in zip(axes.flat, records):
        names = list(r["results"])
        ys = list(range(len(names) + 1))
        deltas = [r["results"][n]["delta"] for n in names] + [r["aggregate"]["delta"]]
        cis = [r["results"][n]["ci"] for n in names] + [r["aggregate"]["ci"]]
        err = [[d - c[0] for d, c in zip(deltas, cis)], [c[1] - d for d, c in zip(deltas, cis)]]
        colours = ["#455a64"] * len(names) + ["#2e7d32" if r["decision"] == "accept" else "#c62828"]
        for y, d, lo, hi, c in zip(ys, deltas, err[0], err[1], colours):
            ax.errorbar(d, y, xerr=[[lo], [hi]], fmt="o", color=c, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(ys, [*names, "subset mean"], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ΔNE valid, % (negative = better)", fontsize=8)
        ax.set_title(f"{r['technique']} @ {r['template_version']}: {r['decision']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(ledger: Ledger, out: Path, cycle: dict | None = None, title: str = "SMT development cycle") -> Path:
    """``out/index.html`` and its figures; returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, caption, draw in (
        ("ne_by_version.png", "Fleet NE per package across template versions", lambda p: plot_ne_by_version(ledger, p)),
        ("matrix.png", "Adoption matrix", lambda p: plot_matrix(_states(pair_matrix(ledger.records)), p)),
        ("deltas.png", "Qualification ΔNE per package with intervals", lambda p: plot_deltas(ledger, p)),
    ):
        if draw(out / name):
            figures.append((name, caption))
    summary = cycle_summary(ledger)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}"
        "th{background:#f0f0f0}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Cycle summary</h2>",
        _table(
            ["qualifications", "accepted", "rejected", "adoptions", "pairs adopted", "machine hours", "pairs / hour"],
            [
                [
                    summary["qualifications"],
                    summary["accepted"],
                    summary["rejected"],
                    summary["adoptions"],
                    summary["pairs_adopted"],
                    f"{summary['machine_hours']:.2f}",
                    f"{summary['pairs_per_machine_hour']:.1f}",
                ]
            ],
        ),
    ]
    if cycle:
        parts.append("<h2>The three figures (DESIGN §7)</h2>")
        parts.append(_table(["figure", "SMT way", "per-model way", "note"], cycle.get("figures_table", [])))
    for name, caption in figures:
        parts.append(f"<h2>{html.escape(caption)}</h2><img src='{name}' alt='{html.escape(caption)}'>")
    rows = []
    for r in ledger.records:
        if r["kind"] == QUALIFICATION:
            a = r["aggregate"]
            interval = f"[{a['ci'][0]:+.3f}, {a['ci'][1]:+.3f}]"
            what = f"{r['decision']}: ΔNE {a['delta']:+.3f}% {interval} on {', '.join(r['packages'])}"
        else:
            counts = {s: list(r["packages"].values()).count(s) for s in set(r["packages"].values())}
            what = f"{r['from_version']} → {r['to_version']}: " + ", ".join(
                f"{n} {s}" for s, n in sorted(counts.items())
            )
        rows.append(
            [
                r["date"],
                r["kind"],
                r["technique"],
                r.get("template_version", r.get("to_version")),
                what,
                f"{r['machine_seconds'] + r.get('cached_seconds', 0):.0f} s",
                r["id"],
            ]
        )
    parts.append("<h2>Ledger</h2>")
    parts.append(_table(["date", "kind", "technique", "version", "outcome", "machine time", "record"], rows))
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return page


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def screenshot(page: Path, png: Path, width: int = 1300, height: int = 2600) -> Path:
    """A real headless browser's rendering of ``page`` (Chromium from the OS packages)."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chromium on this machine: apt-get install chromium")
    args = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        page.resolve().as_uri(),
    ]
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    return png
