"""What a package's `train` pays to import before it reads a byte, at two (or more) versions side by side.

A warm-cache `train` reads its data from the cache; from template v0.7.31 such a run no longer imports pyarrow
(the encoders moved to `columns`, imported on the first fit or transform). A whole 1M-row process
(`benchmarks/process_ab.py`) is 40 s on 2 cores and its imports phase varies by ±0.1 s from run to run, so the
gain is measured here directly, in many short fresh processes:

    .venv/bin/python -m benchmarks.gpu_speed --render build/gpu        # a render at each version
    .venv/bin/python -m benchmarks.import_ab --dirs build/gpu/speed_dcn_v2,build/gpu31/speed_dcn_v2 \\
        --repeats 21 --out build/ab/imports                              # build/ab/imports.{md,json}

Each repeat starts a fresh interpreter per version (interleaved: A, B, A, B, ...) that imports the package's
`train` module, as the CLI's `imports` phase does; it reports the import's own time, the process's wall time
from exec to exit, and which of the heavy optional modules ended up loaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scaffold.results import write_results
from scaffold.speed import machine, package_import_name, template_version

WATCHED = ("pyarrow", "torch._dynamo", "yaml", "numpy")
PROBE = (
    "import sys, time\n"
    "t = time.perf_counter()\n"
    "import {name}.train\n"
    "took = time.perf_counter() - t\n"
    "print(took, *[m in sys.modules for m in {watched!r}])\n"
)


def one_import(package: Path, name: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(package / "src"))
    started = time.perf_counter()
    probe = PROBE.format(name=name, watched=WATCHED)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    took, *loaded = out.stdout.split()
    return {"import_s": float(took), "wall_s": wall, "loaded": dict(zip(WATCHED, (x == "True" for x in loaded)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dirs", required=True, help="package directories, comma-separated")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = parser.parse_args(argv)
    packages = [Path(d).resolve() for d in args.dirs.split(",")]
    names = [package_import_name(p, "train") for p in packages]
    runs: list[list[dict]] = [[] for _ in packages]
    for _ in range(args.repeats):
        for i, (package, name) in enumerate(zip(packages, names)):
            runs[i].append(one_import(package, name))
    rows = []
    for package, rs in zip(packages, runs):
        rows.append(
            {
                "package": str(package),
                "template": template_version(package),
                "median_import_s": statistics.median(r["import_s"] for r in rs),
                "median_wall_s": statistics.median(r["wall_s"] for r in rs),
                "loaded": {m: sum(r["loaded"][m] for r in rs) for m in WATCHED},
                "runs": rs,
            }
        )
    first = rows[0]
    lines = [
        f"Machine: {machine()}. `import <package>.train` in a fresh interpreter; median of {args.repeats} "
        "interleaved repeats per version.",
        "",
        "| package | template | import s | vs first | process wall s | vs first | " + " | ".join(WATCHED) + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(WATCHED),
    ]
    for row in rows:
        loaded = " | ".join(f"{row['loaded'][m]}/{args.repeats}" for m in WATCHED)
        lines.append(
            f"| {row['package']} | {row['template']} | {row['median_import_s']:.3f} | "
            f"{row['median_import_s'] / first['median_import_s']:.2f}× | {row['median_wall_s']:.3f} | "
            f"{row['median_wall_s'] / first['median_wall_s']:.2f}× | {loaded} |"
        )
    lines += ["", "The module columns count the repeats whose process had that module loaded after the import."]
    text = "\n".join(lines) + "\n"
    print(text)
    report = {"machine": machine(), "repeats": args.repeats, "watched": list(WATCHED), "rows": rows}
    write_results(args.out, report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
