"""Training and serving speed of generated packages on a Criteo-shaped synthetic set, beside DeepCTR-Torch.

The set has 13 dense and 26 sparse features whose cardinalities are those of the Criteo Kaggle set capped at
``cap`` (ids drawn from a skewed power law, as real ids are), and a label with a learnable signal. Each
interaction is rendered as a package from the working-tree template and trained one epoch through its own
``train`` command; the peers train the same rows with the same embedding size, MLP sizes and batch size in
their own ``fit``. Every trainer runs in its own process so that its peak memory (max RSS) is its own.

A package trains twice, in two processes: with a cold encoded-data cache (its own, under the work folder),
then warm. Both runs report where their wall time went (the template's ``phases``); the table shows the warm
run, whose whole-process throughput (train rows / process wall seconds) is what a user sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from . import runner
from .errors import SmtError
from .fleet import load_package
from .package_cli import PackageCLI, TrainResult, mean_ne
from .status import render_answers
from .template import TemplateRepo

# The 26 categorical cardinalities of the Criteo Kaggle display-advertising set (C1..C26).
CRITEO_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
NUM_DENSE = 13
INTERACTIONS = ("concat", "dot", "dcn_v2")


@dataclass(frozen=True)
class SpeedSetup:
    """What every trainer in one benchmark run shares."""

    rows: int = 1_000_000
    cap: int = 100_000
    batch_size: int = 4096
    embedding_dim: int = 16
    mlp: tuple[int, ...] = (512, 256)
    dcn_rank: int = 64
    dcn_layers: int = 2
    seed: int = 2026


@dataclass
class SpeedResult:
    trainer: str  # "smt <interaction>" or "DeepCTR-Torch <model>"
    samples_per_second: float
    train_seconds: float
    valid_ne: float
    peak_rss_mb: float
    dense_flops_per_example: float | None = None
    latency_ms: dict = field(default_factory=dict)  # batch → median ms
    notes: str = ""
    wall_seconds: float | None = None  # the whole process, start to exit (warm cache for packages)
    phases: dict = field(default_factory=dict)  # packages: {"cold": {phase: s}, "warm": {phase: s}}
    template: str | None = None  # packages: the template version they were rendered from (template_version)

    def process_samples_per_second(self, rows: int) -> float | None:
        return rows / self.wall_seconds if self.wall_seconds else None


def make_dataset(root: Path, setup: SpeedSetup) -> Path:
    """Write ``train.parquet`` (rows), ``valid.parquet`` (rows / 10) and ``features.yaml`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(setup.seed)
    cards = [min(c, setup.cap) for c in CRITEO_CARDINALITIES]
    effects = [rng.normal(0, 0.6, c) if i % 3 == 0 else np.zeros(c) for i, c in enumerate(cards)]
    dense_weights = rng.normal(0, 0.25, NUM_DENSE)
    for split, rows in (("train", setup.rows), ("valid", max(1, setup.rows // 10))):
        columns, logit = {}, np.full(rows, -1.4)
        for j in range(NUM_DENSE):
            latent = rng.normal(0, 1, rows)
            values = np.floor(np.exp(1.5 * latent + 1)).astype(np.float64)
            values[rng.random(rows) < 0.1] = np.nan
            columns[f"I{j + 1}"] = values
            logit += dense_weights[j] * latent
        for i, card in enumerate(cards):
            ids = np.minimum((card * rng.random(rows) ** 4).astype(np.int64), card - 1)  # skewed: low ids common
            columns[f"C{i + 1}"] = ids
            logit += effects[i][ids]
        columns["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
        pq.write_table(pa.table(columns), root / f"{split}.parquet", row_group_size=131072)
    schema = {
        "labels": ["label"],
        "dense": [{"name": f"I{j + 1}", "transform": "log_standardize"} for j in range(NUM_DENSE)],
        "sparse": [{"name": f"C{i + 1}", "cardinality": c} for i, c in enumerate(cards)],
    }
    (root / "features.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return root


def render_package(repo: TemplateRepo, out: Path, interaction: str, setup: SpeedSetup) -> Path:
    answers = {
        "name": f"speed_{interaction}",
        "interaction": interaction,
        "embedding_dim": setup.embedding_dim,
        "over_arch": json.dumps(list(setup.mlp)),
        "dcn_rank": setup.dcn_rank,
        "dcn_layers": setup.dcn_layers,
    }
    version = repo.working_version()
    with repo.snapshot() as template_dir:
        package = render_answers(template_dir, answers, (out / answers["name"]).resolve())
    (package / RENDER_STAMP).write_text(json.dumps({"template": version}) + "\n")
    return package


RENDER_STAMP = ".smt-render.json"  # written into each render_package output: the template version it came from


def template_version(package: Path) -> str | None:
    """The template version ``package`` was rendered from: its ``render_package`` stamp, or the ``_commit`` copier
    records in a fleet package's ``.copier-answers.yml``; None when neither says (a render of older tools).

    Benchmarks put it into their results, so that every figure names the template that produced it."""
    stamp = package / RENDER_STAMP
    if stamp.is_file():
        try:
            return str(json.loads(stamp.read_text())["template"])
        except (ValueError, KeyError, TypeError):
            return None
    version = load_package(package).version  # None where there are no readable answers
    return None if version is None else str(version)


def package_import_name(package: Path, module: str = "__init__") -> str:
    """The import name of the package directory ``package``: its one ``src/<name>`` holding ``<module>.py``.

    The benchmarks take fleet and rendered packages by directory; one that is not a package of the template
    stops them with a one-line error."""
    src = package / "src"
    names = [p.name for p in src.iterdir() if (p / f"{module}.py").is_file()] if src.is_dir() else []
    if len(names) != 1:
        raise SystemExit(f"{package} is not a package of the template (no single src/<name>/{module}.py)")
    return names[0]


def run_measured(args: list[str], cwd: Path, env: dict) -> tuple[str, float]:
    """Run a command; return its stdout and its peak resident memory in MB (its own, via wait4).

    The command ends with this process (``runner.dies_with_us``: a killed bench leaves no training behind). Its
    exec adds about 11 ms to the process's wall time (measured on a 2-core Intel machine; package and peers alike),
    which the speed table charges to ``startup``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(runner.dies_with_us(args), cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise SmtError(f"`{' '.join(args[:4])} ...` failed: {last[0]}")
    return stdout, usage.ru_maxrss / 1024


def timed_train(
    cli: PackageCLI, data: Path, out: Path, overrides: list[str], env: dict
) -> tuple[TrainResult, float, float]:
    """One ``train`` process of ``cli``'s package on ``data/{train,valid}.parquet`` into ``out``: its summary, its
    wall seconds measured from outside (exec to exit) and its peak resident memory in MB."""
    args = cli.command(*cli.train_args(data / "train.parquet", data / "valid.parquet", out, overrides))
    started = time.perf_counter()
    stdout, rss = run_measured(args, cli.path, env)
    return cli.parse_train(stdout), time.perf_counter() - started, rss


def bench_package(package: Path, data: Path, setup: SpeedSetup, train_args: tuple[str, ...] = ()) -> SpeedResult:
    """One epoch through the package's own ``train``, cold then warm cache; then ``capacity`` and ``export``."""
    cli = PackageCLI(package, features=data / "features.yaml")
    overrides = ["epochs=1", f"batch_size={setup.batch_size}", "warmup_steps=20", *train_args]
    env = {**runner.package_env(package), "SMT_DATA_CACHE": str(package / "data-cache")}
    phases, walls = {}, {}
    for cache in ("cold", "warm"):
        out = package / f"run-{cache}"
        summary, walls[cache], rss = timed_train(cli, data, out, overrides, env)
        phases[cache] = {**summary.phases, "startup": max(0.0, walls[cache] - (summary.process_seconds or 0.0))}
    capacity = cli.run_capacity(summary, out)
    exported = cli.export(out, package / "m.pt2")
    return SpeedResult(
        trainer=f"smt {package.name.removeprefix('speed_')}" + (f" ({' '.join(train_args)})" if train_args else ""),
        samples_per_second=summary.samples_per_second,
        train_seconds=summary.train_seconds,
        valid_ne=mean_ne(summary.valid),
        peak_rss_mb=round(rss, 1),
        dense_flops_per_example=capacity.dense_flops_per_example,
        latency_ms=exported.latency_ms_p50,
        wall_seconds=round(walls["warm"], 3),
        phases=phases,
        template=template_version(package),
    )


def bench_peer(model: str, data: Path, setup: SpeedSetup) -> SpeedResult:
    """DeepCTR-Torch ``model`` (DCN | DeepFM | WDL) trained one epoch with its own ``fit``, in a subprocess."""
    args = [sys.executable, "-m", "scaffold.peers.deepctr", "--data", str(data), "--model", model]
    args += ["--setup", json.dumps(asdict(setup))]
    started = time.perf_counter()
    stdout, rss = run_measured(args, Path(__file__).parents[1], {**os.environ})
    wall = round(time.perf_counter() - started, 3)
    result = json.loads(stdout.strip().splitlines()[-1])
    return SpeedResult(trainer=f"DeepCTR-Torch {model}", peak_rss_mb=round(rss, 1), wall_seconds=wall, **result)


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """This machine's measured fp32 matmul throughput (GFLOP/s, median of ``repeats``), all threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2] / 1e9


def machine() -> str:
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


PHASE_ORDER = (
    "startup",
    "imports",
    "read",
    "fit",
    "encode",
    "cache_write",
    "cache_load",
    "stage",
    "build",
    "steps",
    "evaluate",
    "checkpoint",
    "calibrate",
    "other",
)


def phase_table(results: list[SpeedResult]) -> list[str]:
    """Markdown lines: where each package's process spent its wall seconds, cold and warm cache."""
    measured = [(r, cache, r.phases[cache]) for r in results for cache in ("cold", "warm") if cache in r.phases]
    if not measured:
        return []
    names = [n for n in PHASE_ORDER if any(n in p for _, _, p in measured)]
    names += sorted({n for _, _, p in measured for n in p} - set(names))
    lines = [
        "",
        "Where the wall time of each package's `train` process went (seconds; startup = interpreter start to the",
        "CLI module, from the process wall time):",
        "",
        "| trainer | cache | " + " | ".join(names) + " | total |",
        "|---|---|" + "---:|" * (len(names) + 1),
    ]
    for r, cache, phases in measured:
        cells = " | ".join(f"{phases[n]:.2f}" if n in phases else "–" for n in names)
        lines.append(f"| {r.trainer} | {cache} | {cells} | {sum(phases.values()):.2f} |")
    return lines


def report(results: list[SpeedResult], setup: SpeedSetup) -> tuple[str, dict]:
    """A Markdown table (ratios against the first DeepCTR-Torch DCN, else the first peer) and a JSON payload."""
    peak = matmul_peak_gflops()
    peers = [r for r in results if r.trainer.startswith("DeepCTR")]
    reference = next((r for r in peers if r.trainer.endswith("DCN")), peers[0] if peers else None)
    lines = [
        f"Machine: {machine()}; measured fp32 matmul peak {peak:.0f} GFLOP/s.",
        f"Data: Criteo-shaped synthetic, {setup.rows:,} train rows, 13 dense + 26 sparse (cardinalities capped at "
        f"{setup.cap:,}), batch {setup.batch_size}, embedding {setup.embedding_dim}, MLP {list(setup.mlp)}, "
        f"DCN {setup.dcn_layers} layers (smt: rank {setup.dcn_rank}); one epoch each.",
        "",
        "| trainer | samples/s | vs " + (reference.trainer if reference else "peer") + " | train s | "
        "whole process samples/s | loop ÷ process | valid NE | "
        "peak RSS MB | dense MFLOP/ex | GFLOP/s (3× fwd) | of peak | latency ms b=1 / 64 / 4096 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = []
    for r in results:
        ratio = r.samples_per_second / reference.samples_per_second if reference else None
        achieved = r.samples_per_second * 3 * r.dense_flops_per_example / 1e9 if r.dense_flops_per_example else None
        latency = " / ".join(f"{r.latency_ms.get(b, float('nan')):.2f}" for b in ("1", "64", "4096"))
        process = r.process_samples_per_second(setup.rows)
        whole = f"{process:,.0f} | {r.samples_per_second / process:.2f}×" if process else "– | –"
        lines.append(
            f"| {r.trainer} | {r.samples_per_second:,.0f} | {f'{ratio:.2f}×' if ratio is not None else '–'} "
            f"| {r.train_seconds:.1f} | {whole} "
            f"| {r.valid_ne:.4f} "
            f"| {r.peak_rss_mb:,.0f} | "
            + (
                f"{r.dense_flops_per_example / 1e6:.2f} | {achieved:.1f} | {achieved / peak:.1%}"
                if achieved
                else "– | – | –"
            )
            + f" | {latency} |"
        )
        rows.append(
            {
                **asdict(r),
                "ratio_vs_reference": ratio,
                "achieved_gflops": achieved,
                "process_samples_per_second": process,
            }
        )
    lines += [
        "",
        "samples/s = train rows / wall seconds of the epoch (smt: its train loop incl. the end-of-epoch validation;",
        "DeepCTR-Torch: its `fit`). Whole process = train rows / wall seconds of the process, start to exit (smt:",
        "warm data cache). GFLOP/s counts 3× the forward dense FLOPs per example (forward + backward).",
        *(f"Packages rendered from template {v}." for v in dict.fromkeys(r.template for r in results if r.template)),
        *phase_table(results),
    ]
    payload = {"machine": machine(), "matmul_peak_gflops": peak, "setup": asdict(setup), "results": rows}
    return "\n".join(lines), payload
