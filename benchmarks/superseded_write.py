"""What a run's end pays for a checkpoint write still in flight that the final `last.pt` supersedes.

A large-batch GPU run's last epoch can be shorter than the background write of the previous epoch's full
`last.pt` (1.3 GB with the 4M-row tables of issue #11). Up to template v0.7.27 the run's end waited for that
write to finish, then wrote the final `last.pt` over it; from v0.7.28 it cancels the write
(`BackgroundWriter.cancel`), which stops within one chunk. This times the two ends side by side, with a
package's own `checkpoint` module, on this machine's disk:

    .venv/bin/python -m benchmarks.superseded_write --package generated/adult_income --mb 1300 \\
        --after 0.25 --repeats 5 --out build/bench/superseded    # build/bench/superseded.{md,json}

Each repeat starts a background write of a `--mb` payload (as an epoch's end does), lets it run `--after`
seconds (the last epoch), then either waits for it (`waited`: what the end paid) or cancels it and waits for
the writer to be free (`cancelled`). The two run interleaved. The end's own final write is the same either way
and is not timed here.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from scaffold.results import write_results
from scaffold.speed import machine, package_import_name


def load_checkpoint_module(package: Path):
    """The `checkpoint` module of the package at ``package`` (its `src/<name>`), imported from there."""
    name = package_import_name(package, "checkpoint")
    sys.path.insert(0, str(package / "src"))
    module = importlib.import_module(f"{name}.checkpoint")
    if not hasattr(module.BackgroundWriter, "cancel"):
        raise SystemExit(f"{package} is at a template without BackgroundWriter.cancel (before v0.7.28)")
    return module


def payload_of(mb: int) -> dict:
    """A checkpoint-shaped payload of about ``mb`` MB: tables of 16 float32 columns, as a model's and its
    optimizer's moments are."""
    rows = max(1, mb * (1 << 20) // (3 * 16 * 4))
    return {
        "model": {"tables.weight": torch.randn(rows, 16)},
        "sparse_opt": {"exp_avg": torch.randn(rows, 16), "exp_avg_sq": torch.rand(rows, 16)},
        "progress": {"done": False},
    }


def one_end(checkpoint, payload: dict, path: Path, after: float, cancel: bool) -> dict:
    writer = checkpoint.BackgroundWriter()
    started = time.perf_counter()
    writer.save(payload, path)  # the snapshot copy happens here, on the training thread
    snapshot = time.perf_counter() - started
    time.sleep(after)
    end = time.perf_counter()
    if cancel:
        writer.cancel(path)
    writer.wait()
    return {"snapshot_s": snapshot, "end_waits_s": time.perf_counter() - end, "file": path.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, required=True, help="a package at template v0.7.28 or later")
    parser.add_argument("--mb", type=int, default=1300, help="size of the superseded write")
    parser.add_argument("--after", type=float, default=0.25, help="seconds the write runs before the end")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint_module(args.package.resolve())
    payload = payload_of(args.mb)
    size = sum(t.numel() * t.element_size() for part in payload.values() for t in part.values() if torch.is_tensor(t))
    runs: dict[str, list[dict]] = {"waited": [], "cancelled": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for repeat in range(args.repeats):
            for mode in ("waited", "cancelled") if repeat % 2 == 0 else ("cancelled", "waited"):
                path = Path(tmp) / f"{mode}-{repeat}.pt"
                runs[mode].append(one_end(checkpoint, payload, path, args.after, cancel=mode == "cancelled"))
                path.unlink(missing_ok=True)
    median = {mode: statistics.median(r["end_waits_s"] for r in rs) for mode, rs in runs.items()}
    report = {
        "machine": machine(),
        "package": str(args.package),
        "payload_mb": round(size / 1e6, 1),
        "after_s": args.after,
        "repeats": args.repeats,
        "chunk_mb": checkpoint.CHUNK_BYTES / 1e6,
        "median_end_waits_s": median,
        "median_snapshot_s": statistics.median(r["snapshot_s"] for rs in runs.values() for r in rs),
        "files_written": {mode: sum(r["file"] for r in rs) for mode, rs in runs.items()},
        "runs": runs,
    }
    lines = [
        f"Machine: {report['machine']}. A background write of {report['payload_mb']:,} MB, {args.after} s in "
        f"flight when the run ends; median of {args.repeats} interleaved repeats.",
        "",
        "| end | waits s (median) | each repeat s | files left written |",
        "|---|---:|---|---:|",
    ]
    for mode, rs in runs.items():
        each = ", ".join(f"{r['end_waits_s']:.3f}" for r in rs)
        lines.append(f"| {mode} | {median[mode]:.3f} | {each} | {report['files_written'][mode]} |")
    lines += ["", f"Snapshot copy on the training thread (both): {report['median_snapshot_s']:.3f} s (median)."]
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(args.out, report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
