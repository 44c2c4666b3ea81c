"""Whole `train` processes of fleet packages at two (or more) commits of this repository, side by side.

Each package is taken as committed at each ref (`git archive REF generated/NAME`), so a ref before and after a
template sync compares the same model at two template versions. Every (package, ref) trains once to warm its data
cache, then the repeats run interleaved (ref A, ref B, ref A, ...), so a slow moment of the machine falls on
every ref alike. Each run is the package's own CLI in a fresh process, timed from the outside:

    .venv/bin/smt data fetch --out build/data            # the real tasks (DESIGN §5)
    .venv/bin/python -m benchmarks.process_ab --refs c63e072,HEAD --packages adult_income,movielens_like \\
        --data build/data --repeats 5 --out build/ab/process
                   # build/ab/process.{md,json}

Prints a table of medians (wall seconds from exec to exit; the process's own phases) and writes JSON. Valid
NE is listed per ref, so a change that should not move a metric shows that it did not.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from scaffold import runner
from scaffold.package_cli import PackageCLI, mean_ne
from scaffold.speed import machine, run_measured, template_version

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("imports", "read", "fit", "encode", "cache_load", "build", "steps", "evaluate", "checkpoint")


def checkout(ref: str, package: str, into: Path) -> Path:
    """``generated/<package>`` as committed at ``ref``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, f"generated/{package}"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "generated" / package


def train_once(package: Path, data: Path, work: Path, overrides: list[str]) -> dict:
    """One ``train`` process of ``package`` on ``data/{train,valid}.parquet``: wall seconds, summary figures."""
    cli = PackageCLI(package)
    out = Path(tempfile.mkdtemp(dir=work))
    args = cli.command(*cli.train_args(data / "train.parquet", data / "valid.parquet", out, overrides))
    env = {**runner.package_env(package), "SMT_DATA_CACHE": str(work / "data-cache")}
    started = time.perf_counter()
    stdout, rss = run_measured(args, package, env)
    wall = time.perf_counter() - started
    summary = cli.parse_train(stdout)
    return {
        "wall_seconds": wall,
        "process_seconds": summary.process_seconds,
        "phases": summary.phases,
        "steps": summary.steps,
        "valid_mean_ne": mean_ne(summary.valid),
        "peak_rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", required=True, help="comma-separated commits of this repository; first = baseline")
    parser.add_argument("--packages", required=True, help="comma-separated fleet packages")
    parser.add_argument("--data", type=Path, required=True, help="DATA/<package>/{train,valid}.parquet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extra", default="", help="key=value training options for every run")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    refs, packages, overrides = args.refs.split(","), args.packages.split(","), args.extra.split()

    runs: dict[tuple[str, str], list[dict]] = {}
    versions: dict[tuple[str, str], str | None] = {}
    with tempfile.TemporaryDirectory(prefix="smt-process-ab-") as tmp:
        work = Path(tmp)
        dirs = {}
        for ref in refs:
            for package in packages:
                dirs[(package, ref)] = checkout(ref, package, work / ref.replace("/", "_"))
                versions[(package, ref)] = template_version(dirs[(package, ref)])
                train_once(dirs[(package, ref)], args.data / package, work, overrides)  # warms the data cache
                runs[(package, ref)] = []
        for repeat in range(args.repeats):
            for package in packages:
                for ref in refs:
                    run = train_once(dirs[(package, ref)], args.data / package, work, overrides)
                    runs[(package, ref)].append(run)
                    line = {
                        "repeat": repeat,
                        "package": package,
                        "ref": ref,
                        "wall_seconds": round(run["wall_seconds"], 3),
                    }
                    print(json.dumps(line), flush=True)

    rows = []
    for package in packages:
        baseline = statistics.median(r["wall_seconds"] for r in runs[(package, refs[0])])
        for ref in refs:
            done = runs[(package, ref)]
            wall = statistics.median(r["wall_seconds"] for r in done)
            phases = {p: round(statistics.median(r["phases"].get(p, 0.0) for r in done), 3) for p in PHASES}
            rows.append(
                {
                    "package": package,
                    "ref": ref,
                    "template": versions[(package, ref)],
                    "wall_seconds": round(wall, 3),
                    "wall_all": [round(r["wall_seconds"], 3) for r in done],
                    "process_seconds": round(statistics.median(r["process_seconds"] or 0.0 for r in done), 3),
                    "phases": phases,
                    "vs_first": round(wall / baseline, 3),
                    "valid_mean_ne": sorted({round(r["valid_mean_ne"], 6) for r in done}),
                    "steps": done[0]["steps"],
                    "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in done)),
                }
            )
    payload = {"machine": machine(), "repeats": args.repeats, "overrides": overrides, "results": rows}
    lines = [
        f"Machine: {payload['machine']}. Median of {args.repeats} interleaved repeats per package and ref, warm "
        f"data cache; wall = exec to exit, measured outside the process."
        + (f" Training options: {' '.join(overrides)}." if overrides else ""),
        "",
        "| package | ref | template | steps | wall s | vs first | process s | "
        + " | ".join(PHASES)
        + " | peak RSS MB | valid NE |",
        "|---|---|---|---:|---:|---:|---:|" + "---:|" * len(PHASES) + "---:|---|",
    ]
    for r in rows:
        phases = " | ".join(f"{r['phases'][p]:.2f}" for p in PHASES)
        ne = ", ".join(f"{v:.6f}" for v in r["valid_mean_ne"])
        lines.append(
            f"| {r['package']} | {r['ref']} | {r['template'] or '–'} | {r['steps']:,} | {r['wall_seconds']:.2f} | "
            f"{r['vs_first']:.2f}× | {r['process_seconds']:.2f} | {phases} | {r['peak_rss_mb']:,} | {ne} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
