"""Large batches that keep NE: batch-size scaling rules with and without CowClip, on one real package (#11).

    .venv/bin/python -m benchmarks.large_batch --package generated/employment --data build/data/employment \
        --batches 512,4096,16384 --seeds 0,1,2 --out benchmarks/results/large_batch_cpu

Every run trains through the package's own ``train`` (same epochs as its ``train.yaml``) and is scored on
valid and test (``train --test``, or ``evaluate`` for packages before template v0.7.10). The reference is the
package at ``--reference-batch`` with its own settings; each larger batch runs every recipe:

- ``none``: the tuned lrs as they are;
- ``sqrt``: both lrs × √s (s = batch / reference batch);
- ``cowclip``: the CowClip scaling rule (dense lr × √s, embedding lr × 1, embedding L2 × s, warmup in examples)
  without the clipping (since template v0.7.1 the lrs stop growing above the package's
  ``critical_batch_size``, 4,096 by default; add ``critical_batch_size=0`` to a recipe for the plain rule);
- ``cowclip+clip``: the same with CowClip's column-wise clipping (``embedding_clip=1``, ζ = 1e-5) and
  embedding L2 1e-4 scaled × s, as the paper pairs them.

Prints a table (median valid and test NE over seeds, relative change against the reference, steps, train
seconds) and writes ``OUT.json`` / ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from scaffold.package_cli import PackageCLI, mean_ne
from scaffold.results import write_results

RECIPES = {
    "none": ["lr_scaling=none"],
    "sqrt": ["lr_scaling=sqrt"],
    "cowclip": ["lr_scaling=cowclip"],
    "cowclip+clip": ["lr_scaling=cowclip", "embedding_clip=1.0", "embedding_weight_decay=1e-4"],
}


def run_one(cli: PackageCLI, data: Path, work: Path, batch: int, reference: int, recipe: str, seed: int) -> dict:
    out = work / f"b{batch}-{recipe}-s{seed}"
    overrides = [f"batch_size={batch}", f"reference_batch_size={reference}", f"seed={seed}", *RECIPES[recipe]]
    summary, test = cli.train_and_test(
        data / "train.parquet", data / "valid.parquet", data / "test.parquet", out, overrides
    )
    return {
        "batch": batch,
        "recipe": recipe,
        "seed": seed,
        "valid_ne": mean_ne(summary.valid),
        "test_ne": mean_ne(test.events),
        "steps": summary.steps,
        "train_seconds": summary.train_seconds,
    }


def table(runs: list[dict], reference: int) -> tuple[str, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["batch"], run["recipe"]), []).append(run)
    base = groups[(reference, "none")]
    base_valid = statistics.median(r["valid_ne"] for r in base)
    base_test = statistics.median(r["test_ne"] for r in base)
    lines = [
        "| batch | recipe | valid NE (median) | Δ valid vs reference | test NE (median) | Δ test | steps | train s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for (batch, recipe), members in sorted(groups.items()):
        valid = statistics.median(r["valid_ne"] for r in members)
        test = statistics.median(r["test_ne"] for r in members)
        row = {
            "batch": batch,
            "recipe": recipe,
            "seeds": len(members),
            "valid_ne": valid,
            "test_ne": test,
            "delta_valid_pct": 100 * (valid / base_valid - 1),
            "delta_test_pct": 100 * (test / base_test - 1),
            "valid_ne_per_seed": [r["valid_ne"] for r in members],
            "steps": members[0]["steps"],
            "train_seconds": statistics.median(r["train_seconds"] for r in members),
        }
        rows.append(row)
        lines.append(
            f"| {batch:,} | {recipe} | {valid:.4f} | {row['delta_valid_pct']:+.2f}% | {test:.4f} | "
            f"{row['delta_test_pct']:+.2f}% | {row['steps']} | {row['train_seconds']:.1f} |"
        )
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="a package directory, e.g. generated/employment")
    parser.add_argument("--data", required=True, help="its task folder with train/valid/test.parquet")
    parser.add_argument("--batches", default="512,4096,16384", help="the first is the reference batch")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    recipes = [r for r in args.recipes.split(",") if r]
    seeds = [int(s) for s in args.seeds.split(",")]
    package, data, reference = Path(args.package).resolve(), Path(args.data).resolve(), batches[0]
    cli = PackageCLI(package)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            runs.append(run_one(cli, data, Path(tmp), reference, reference, "none", seed))
            for batch in batches[1:]:
                for recipe in recipes:
                    runs.append(run_one(cli, data, Path(tmp), batch, reference, recipe, seed))
                    print(json.dumps(runs[-1]), flush=True)
    markdown, rows = table(runs, reference)
    command = "python -m benchmarks.large_batch " + " ".join(sys.argv[1:] if argv is None else argv)
    header = (
        f"`{command}`\n\nPackage {package.name}, task data {data.name}; reference batch {reference} with the "
        f"package's own settings; seeds {seeds}; NE = mean over events of logloss / entropy of the split's own "
        "base rate.\n"
    )
    print(header + "\n" + markdown)
    if args.out:
        payload = {"package": package.name, "data": data.name, "seeds": seeds, "rows": rows, "runs": runs}
        write_results(args.out, payload, f"{header}\n{markdown}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
