"""Whole `train` processes of packages at two (or more) versions, side by side.

Two ways to name the versions:
- `--refs A,B --packages X,Y`: each fleet package as committed at each commit of this repository (`git archive
  REF generated/NAME`), so a ref before and after a template sync compares the same model at two template
  versions; data from `--data DATA/<package>/{train,valid}.parquet`.
- `--dirs A,B`: rendered package directories (e.g. two renders of `benchmarks/gpu_speed.py --render`), all
  trained on `--data DIR/{train,valid}.parquet` (and `DIR/features.yaml` when there is one).

Every version trains once to warm its data cache, then the repeats run interleaved (A, B, A, B, ...), so a slow
moment of the machine falls on every version alike. Each run is the package's own CLI in a fresh process,
timed from the outside:

    .venv/bin/smt data fetch --out build/data            # the real tasks (DESIGN §5)
    .venv/bin/python -m benchmarks.process_ab --refs c63e072,HEAD --packages adult_income,movielens_like \\
        --data build/data --repeats 5 --out build/ab/process
                   # build/ab/process.{md,json}

Prints a table of medians (wall seconds from exec to exit; the process's own phases; the final `last.pt`'s
size) and writes JSON. Valid NE is listed per version, so a change that should not move a metric shows that it
did not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scaffold import _git, runner
from scaffold.package_cli import PackageCLI, mean_ne
from scaffold.results import write_results
from scaffold.speed import machine, package_import_name, template_version, timed_train

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("imports", "read", "fit", "encode", "cache_load", "build", "steps", "evaluate", "checkpoint", "other")


@dataclass(frozen=True)
class Subject:
    """One package at one version: ``package`` groups the rows compared, ``version`` labels the one measured."""

    package: str
    version: str
    path: Path  # the package directory, named as its import name (PackageCLI runs ``python -m <dir name>``)
    data: Path  # train.parquet, valid.parquet (and features.yaml, when the package trains on another layout)


def checkout(ref: str, package: str, into: Path) -> Path:
    """``generated/<package>`` as committed at ``ref``, extracted under ``into``."""
    _git.export_tree(ROOT, ref, into, f"generated/{package}")
    return into / "generated" / package


def copy_render(render: Path, into: Path) -> Path:
    """A copy of the rendered package ``render`` (its sources, not its runs) at ``into/<import name>``."""
    ignore = shutil.ignore_patterns("runs", "data", "data-cache", "__pycache__", "run-*")
    return Path(shutil.copytree(render, into / package_import_name(render), ignore=ignore))


def train_once(subject: Subject, work: Path, overrides: list[str]) -> dict:
    """One ``train`` process of ``subject``: wall seconds (exec to exit) and its summary's figures."""
    features = subject.data / "features.yaml"
    cli = PackageCLI(subject.path, features=features if features.is_file() else None)
    out = Path(tempfile.mkdtemp(dir=work))
    env = {**runner.package_env(subject.path), "SMT_DATA_CACHE": str(work / "data-cache")}
    summary, wall, rss = timed_train(cli, subject.data, out, overrides, env)
    last = (out / "last.pt").stat().st_size
    shutil.rmtree(out)  # checkpoints of large tables: hundreds of MB a run
    return {
        "wall_seconds": wall,
        "process_seconds": summary.process_seconds,
        "phases": summary.phases,
        "steps": summary.steps,
        "valid_mean_ne": mean_ne(summary.valid),
        "peak_rss_mb": rss,
        "last_pt_mb": last / 1e6,
    }


def subjects(args, work: Path) -> list[Subject]:
    if bool(args.refs) == bool(args.dirs):
        raise SystemExit("name the versions either with --refs A,B (and --packages) or with --dirs A,B")
    if args.dirs:
        renders = [Path(d).resolve() for d in args.dirs.split(",")]
        copies = [copy_render(render, work / f"dir{i}") for i, render in enumerate(renders)]
        return [Subject(copies[0].name, str(r), c, args.data) for r, c in zip(renders, copies)]
    if not args.packages:
        raise SystemExit("--refs needs --packages")
    found = []
    for package in args.packages.split(","):
        for ref in args.refs.split(","):
            path = checkout(ref, package, work / ref.replace("/", "_"))
            found.append(Subject(package, ref, path, args.data / package))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", help="comma-separated commits of this repository; the first is the baseline")
    parser.add_argument("--packages", help="comma-separated fleet packages (with --refs)")
    parser.add_argument("--dirs", help="comma-separated rendered package directories; the first is the baseline")
    parser.add_argument("--data", type=Path, required=True, help="--refs: DATA/<package>/; --dirs: DATA/")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extra", default="", help="key=value training options for every run")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    overrides = args.extra.split()

    with tempfile.TemporaryDirectory(prefix="smt-process-ab-") as tmp:
        work = Path(tmp)
        todo = subjects(args, work)
        versions = {s: template_version(s.path) for s in todo}
        runs: dict[Subject, list[dict]] = {}
        for subject in todo:
            train_once(subject, work, overrides)  # warms the data cache
            runs[subject] = []
        for repeat in range(args.repeats):
            for subject in todo:
                run = train_once(subject, work, overrides)
                runs[subject].append(run)
                line = {"repeat": repeat, "package": subject.package, "version": subject.version}
                print(json.dumps({**line, "wall_seconds": round(run["wall_seconds"], 3)}), flush=True)

    rows, baselines = [], {}
    for subject in todo:
        done = runs[subject]
        wall = statistics.median(r["wall_seconds"] for r in done)
        baseline = baselines.setdefault(subject.package, wall)  # the first version of each package
        rows.append(
            {
                "package": subject.package,
                "version": subject.version,
                "template": versions[subject],
                "wall_seconds": round(wall, 3),
                "wall_all": [round(r["wall_seconds"], 3) for r in done],
                "process_seconds": round(statistics.median(r["process_seconds"] or 0.0 for r in done), 3),
                "phases": {p: round(statistics.median(r["phases"].get(p, 0.0) for r in done), 3) for p in PHASES},
                "vs_first": round(wall / baseline, 3),
                "valid_mean_ne": sorted({round(r["valid_mean_ne"], 6) for r in done}),
                "steps": done[0]["steps"],
                "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in done)),
                "last_pt_mb": round(statistics.median(r["last_pt_mb"] for r in done), 1),
            }
        )
    payload = {"machine": machine(), "repeats": args.repeats, "overrides": overrides, "results": rows}
    text = report(payload)
    print(text)
    write_results(args.out, payload, text)


def report(payload: dict) -> str:
    """The Markdown table of ``payload`` (one row per package and version)."""
    overrides = payload["overrides"]
    lines = [
        f"Machine: {payload['machine']}. Median of {payload['repeats']} interleaved repeats per package and "
        "version, warm data cache; wall = exec to exit, measured outside the process."
        + (f" Training options: {' '.join(overrides)}." if overrides else ""),
        "",
        "| package | version | template | steps | wall s | vs first | process s | "
        + " | ".join(PHASES)
        + " | last.pt MB | peak RSS MB | valid NE |",
        "|---|---|---|---:|---:|---:|---:|" + "---:|" * len(PHASES) + "---:|---:|---|",
    ]
    for r in payload["results"]:
        phases = " | ".join(f"{r['phases'][p]:.2f}" for p in PHASES)
        ne = ", ".join(f"{v:.6f}" for v in r["valid_mean_ne"])
        lines.append(
            f"| {r['package']} | {r['version']} | {r['template'] or '–'} | {r['steps']:,} | {r['wall_seconds']:.2f} | "
            f"{r['vs_first']:.2f}× | {r['process_seconds']:.2f} | {phases} | {r.get('last_pt_mb', 0):,.1f} | "
            f"{r['peak_rss_mb']:,} | {ne} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
