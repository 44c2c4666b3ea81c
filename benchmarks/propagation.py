"""Benchmark: one template change propagated to fleets of 20 and 100 packages in one repository.

    .venv/bin/python -m benchmarks.propagation [--sizes 20 100] [--copier-sample 10]

Side by side in one run, on copies of the same repository: `smt sync --no-test` (a subprocess, as users run
it) against the sequential `copier update --defaults generated/<p> && git add -A generated/<p>` loop that
copier-facts.md measured. Every package carries a local edit in a template-owned file and one in its
model-owned schema. At sizes above --copier-sample, the copier loop runs on a sample of that many packages
and its total is extrapolated (marked in the table). Then, on the synced fleet, committed: `smt status` and
`smt check` (each renders every package) in one process (`--jobs 1`) and with one worker per CPU.
Results: benchmarks/results/propagation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.fleet_smoke import machine
from scaffold import TemplateRepo
from scaffold.status import render_answers
from scaffold.sync import _answers_text
from tests.helpers import commit_all, git, make_template_repo, tree_files

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).resolve().parent / "results"
SRC = "template_repo/src/{{ name }}"


def _render_package(args: tuple[Path, Path, str, int]) -> None:
    """What `copier copy` at v1 writes (render + answers with _commit/_src_path), for one package.

    Every third package is a two-event `dot` model, the others the template defaults (deterministic).
    """
    template_dir, dest, name, index = args
    data = {"name": name, **({"events": ["click", "buy"], "interaction": "dot"} if index % 3 == 0 else {})}
    render_answers(template_dir, data, dest)
    (dest / ".copier-answers.yml").write_text(_answers_text(dest, ".", "v1"))


def build_fleet(root: Path, size: int) -> None:
    make_template_repo(root, tag="v1")
    repo = TemplateRepo.find(root)
    names = [f"model_{i:03d}" for i in range(size)]
    with repo.snapshot("v1") as template_dir, ProcessPoolExecutor() as pool:
        list(pool.map(_render_package, [(template_dir, root / "generated" / n, n, i) for i, n in enumerate(names)]))
    commit_all(root, f"{size} packages at v1")
    for n in names:  # a local edit in a template-owned file and in the model-owned schema of every package
        config = root / "generated" / n / "src" / n / "config.py"
        config.write_text(config.read_text().replace('"""Typed', '"""Local note.\n\nTyped', 1))
        features = root / "generated" / n / "src" / n / "features.yaml"
        features.write_text(features.read_text() + "# model-owned note\n")
    commit_all(root, "local edits")
    metrics = root / SRC / "metrics.py"
    metrics.write_text(metrics.read_text().replace("EPS = 1e-7", "EPS = 1e-6"))
    with (root / SRC / "loss.py").open("a") as fh:
        fh.write("\n\ndef weighted_v2(x: torch.Tensor, w: float) -> torch.Tensor:\n    return x * w\n")
    commit_all(root, "template v2")
    git(root, "tag", "v2")
    git(root, "gc", "-q")


def time_smt_sync(root: Path) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "smt"), "sync", "--no-test", "--json"], cwd=root, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"smt sync failed: {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def time_read_commands(root: Path) -> dict:
    """``smt status --json`` and ``smt check`` on the committed fleet, with one job and with one per CPU. Each
    package declares its local edit of a template-owned file (``.smt-drift``), so the fleet passes the check."""
    for package in (root / "generated").iterdir():
        (package / ".smt-drift").write_text(f"src/{package.name}/config.py  # the local note\n")
    commit_all(root, "fleet at v2, drift declared")
    timings, outputs = {}, {}
    for command, extra in (("status", ["--json"]), ("check", [])):
        for label, jobs in (("1_job", ["--jobs", "1"]), ("all_cpus", [])):
            start = time.perf_counter()
            proc = subprocess.run([str(BIN / "smt"), command, *extra, *jobs], cwd=root, capture_output=True, text=True)
            timings[f"{command}_seconds_{label}"] = round(time.perf_counter() - start, 2)
            if proc.returncode != 0:
                raise SystemExit(f"smt {command} failed: {proc.stdout[-1000:]}{proc.stderr[-2000:]}")
            outputs[command, label] = proc.stdout
    return {
        **timings,
        "status_same_with_workers": outputs["status", "1_job"] == outputs["status", "all_cpus"],
        "check_ok": "fleet check: ok" in outputs["check", "all_cpus"],
    }


def time_copier_loop(root: Path, names: list[str]) -> list[float]:
    seconds = []
    for name in names:
        start = time.perf_counter()
        subprocess.run(
            [str(BIN / "copier"), "update", "-q", "--defaults", f"generated/{name}"],
            cwd=root,
            check=True,
            capture_output=True,
        )
        git(root, "add", "-A", f"generated/{name}")
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(size: int, sample: int, work: Path) -> dict:
    base = work / f"fleet{size}"
    build_fleet(base, size)
    ours, theirs = work / f"smt{size}", work / f"copier{size}"
    shutil.copytree(base, ours)
    shutil.copytree(base, theirs)
    smt_seconds, results = time_smt_sync(ours)
    names = sorted(p.name for p in (base / "generated").iterdir())
    measured = names if size <= sample else names[:: max(1, size // sample)][:sample]
    copier_seconds = time_copier_loop(theirs, measured)
    same = all(tree_files(ours / "generated" / n) == tree_files(theirs / "generated" / n) for n in measured)
    kept = all("Local note." in (ours / "generated" / n / "src" / n / "config.py").read_text() for n in names)
    copier_total = sum(copier_seconds) * (size / len(measured))
    reads = time_read_commands(ours)
    return {
        "packages": size,
        "smt_sync_seconds": round(smt_seconds, 2),
        "smt_sync_per_package": round(smt_seconds / size, 3),
        "copier_loop_seconds": round(copier_total, 2),
        "copier_loop_extrapolated": len(measured) < size,
        "copier_per_package_median": round(statistics.median(copier_seconds), 3),
        "speedup": round(copier_total / smt_seconds, 1),
        "updated": sum(r["result"] == "updated" for r in results),
        "files_changed_automatically": sum(len(r["files_changed"]) for r in results),
        "lines_edited_by_hand": 0,
        "local_edits_kept": kept,
        "identical_to_copier_update": same,
        "compared_packages": len(measured),
        **reads,
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Propagation benchmark: one template change to every package",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Command: "
        "`.venv/bin/python -m benchmarks.propagation`. Template change: 2 template-owned files (a changed constant, "
        "an added function); every package has a local edit in a template-owned file and in its schema.",
        "",
        "| packages | smt sync (s) | per package (s) | copier loop (s) | copier per package, median (s) | speedup "
        "| updated | files changed | hand edits | local edits kept | = copier update |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in result["sizes"]:
        loop = f"{r['copier_loop_seconds']:.1f}" + (
            f" (from {r['compared_packages']})" if r["copier_loop_extrapolated"] else ""
        )
        cells = [
            r["packages"],
            f"{r['smt_sync_seconds']:.2f}",
            f"{r['smt_sync_per_package']:.3f}",
            loop,
            f"{r['copier_per_package_median']:.2f}",
            f"{r['speedup']}×",
            r["updated"],
            r["files_changed_automatically"],
            r["lines_edited_by_hand"],
            r["local_edits_kept"],
            r["identical_to_copier_update"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    sizes = {r["packages"]: r for r in result["sizes"]}
    if 20 in sizes and 100 in sizes:
        ratio = sizes[100]["smt_sync_per_package"] / sizes[20]["smt_sync_per_package"]
        lines += ["", f"Per-package time of smt sync at 100 packages / at 20: {ratio:.2f}×."]
    reads = [r for r in result["sizes"] if "status_seconds_1_job" in r]
    if reads:
        lines += [
            "",
            f"Reading the synced fleet (committed): each command renders every package; {m['cores']} CPU(s).",
            "",
            "| packages | smt status --jobs 1 (s) | smt status (s) | speedup | smt check --jobs 1 (s) | smt check (s) "
            "| speedup | same status | check ok |",
            "|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in reads:
            cells = [
                r["packages"],
                f"{r['status_seconds_1_job']:.2f}",
                f"{r['status_seconds_all_cpus']:.2f}",
                f"{r['status_seconds_1_job'] / r['status_seconds_all_cpus']:.2f}×",
                f"{r['check_seconds_1_job']:.2f}",
                f"{r['check_seconds_all_cpus']:.2f}",
                f"{r['check_seconds_1_job'] / r['check_seconds_all_cpus']:.2f}×",
                r["status_same_with_workers"],
                r["check_ok"],
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--copier-sample", type=int, default=20, help="max packages the copier loop runs on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smt-bench-") as tmp:
        sizes = []
        for size in args.sizes:
            sizes.append(measure(size, args.copier_sample, Path(tmp)))
            print(json.dumps(sizes[-1]))
    result = {"machine": machine(), "settings": vars(args), "sizes": sizes}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "propagation.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "propagation.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
