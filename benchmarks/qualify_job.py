"""Machine time of one qualification job: ``train --test`` (one process) against ``train`` + ``evaluate``.

    .venv/bin/python -m benchmarks.qualify_job --packages adult_income,bio_rare --repeats 5 \
        --out benchmarks/results/qualify_job_v0710

A qualification job trains one arm of one package on one seed and scores it on valid and test (the figure
"pairs adopted per machine-hour" of DESIGN §7 is made of such jobs). Since template v0.7.10 the package scores
the test split inside its training process; before, a second process started, imported torch and loaded the
checkpoint. Both ways run here through the package's own CLI on the same task data, alternating, on one thread
each (as ``smt qualify`` runs a job); the table gives the median wall seconds of each way, their ratio and the
NE each way reports (which must be equal).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from scaffold.package_cli import PackageCLI, mean_ne
from scaffold.results import write_results
from scaffold.scratch import scratch_dir

WAYS = ("train --test", "train + evaluate")


def one_job(cli: PackageCLI, data: Path, way: str, seed: int) -> dict:
    """The wall seconds and NEs of one job done ``way``."""
    split = {s: data / f"{s}.parquet" for s in ("train", "valid", "test")}
    started = time.perf_counter()
    with scratch_dir("bench-job") as tmp:
        out = Path(tmp) / "run"
        if way == WAYS[0]:
            trained = cli.train(split["train"], split["valid"], out, [f"seed={seed}"], test=split["test"])
            test = trained.test
        else:
            trained = cli.train(split["train"], split["valid"], out, [f"seed={seed}"])
            test = cli.evaluate(out, split["test"])
    seconds = time.perf_counter() - started
    return {"way": way, "seconds": round(seconds, 3), "valid_ne": mean_ne(trained.valid), "test_ne": test.mean_ne}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default="adult_income,bio_rare", help="packages of generated/, comma-separated")
    parser.add_argument("--fleet", default="generated")
    parser.add_argument("--data", default="build/data", help="task data root (smt data fetch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads of each job (smt qualify: 1)")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    runs, rows = [], []
    for name in [p for p in args.packages.split(",") if p]:
        cli, data = PackageCLI(Path(args.fleet) / name, threads=args.threads), Path(args.data) / name
        if not cli.accepts("train", "--test"):
            raise SystemExit(f"{name}'s train takes no --test (template < v0.7.10): run `smt sync` first")
        for _ in range(args.repeats):
            for way in WAYS:
                runs.append({"package": name, **one_job(cli, data, way, seed=0)})
                print(json.dumps(runs[-1]), flush=True)
        median = {
            w: statistics.median(r["seconds"] for r in runs if r["package"] == name and r["way"] == w) for w in WAYS
        }
        ne = {
            w: next((r["valid_ne"], r["test_ne"]) for r in runs if r["package"] == name and r["way"] == w) for w in WAYS
        }
        rows.append({"package": name, "median_seconds": median, "ratio": median[WAYS[0]] / median[WAYS[1]], "ne": ne})
    lines = [
        f"| package | {WAYS[0]} (s, median) | {WAYS[1]} (s, median) | ratio | valid / test NE, each way |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        m, ne = row["median_seconds"], row["ne"]
        same = "equal" if ne[WAYS[0]] == ne[WAYS[1]] else f"DIFFER {ne}"
        lines.append(
            f"| {row['package']} | {m[WAYS[0]]:.2f} | {m[WAYS[1]]:.2f} | {row['ratio']:.3f} | "
            f"{ne[WAYS[0]][0]:.5f} / {ne[WAYS[0]][1]:.5f} ({same}) |"
        )
    command = "python -m benchmarks.qualify_job " + " ".join(sys.argv[1:] if argv is None else argv)
    header = (
        f"`{command}`\n\n{args.repeats} jobs each way per package, alternating; seed 0; {args.threads} thread(s).\n"
    )
    print(header + "\n" + "\n".join(lines))
    if args.out:
        write_results(args.out, {"rows": rows, "runs": runs}, header + "\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
