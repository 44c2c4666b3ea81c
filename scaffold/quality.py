"""Quality of fleet packages on their real tasks: train over seeds through each package's own CLI, test metrics.

Task data comes from `smt data fetch` (DESIGN §5). A *variant* is a named set of training overrides
(``key=value``), so template defaults can be chosen by evidence across the whole fleet: one setting for all.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import _git, runner
from .datasets.tasks import ALIASES
from .errors import SmtError
from .fleet import Package, load_package
from .package_cli import Capacity, EventMetrics, PackageCLI, events_to_dict, mean_ne
from .scratch import scratch_dir
from .status import render_answers
from .template import TemplateRepo, is_model_owned, model_owned_patterns, questions


@dataclass
class Run:
    package: str
    variant: str
    seed: int
    test: dict[str, EventMetrics]
    train_seconds: float
    steps: int
    capacity: Capacity | None  # None for peers
    valid: dict[str, EventMetrics] = field(default_factory=dict)  # at the best validation step (smt runs)

    @property
    def mean_ne(self) -> float:
        return mean_ne(self.test)

    def to_dict(self) -> dict:
        return {
            **{k: getattr(self, k) for k in ("package", "variant", "seed", "train_seconds", "steps")},
            "test": events_to_dict(self.test),
            "valid": events_to_dict(self.valid),
            "capacity": self.capacity.to_dict() if self.capacity else {},
        }


@dataclass
class Summary:
    package: str
    variant: str
    runs: list[Run] = field(default_factory=list)

    def stat(self, key: str) -> tuple[float, float]:
        """Mean and std over seeds of the test metric ``key`` averaged over events; NaN where a run lacks it."""
        values = []
        for r in self.runs:
            per_event = [getattr(m, key) for m in r.test.values()]
            values.append(math.nan if None in per_event else statistics.mean(per_event))
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def task_path(data_root: Path, package: Package) -> Path:
    """Where the package's task data lives: its own name, or the task it shares (movielens_multi)."""
    return data_root / ALIASES.get(package.name, package.name)


def task_dir(data_root: Path, package: Package) -> Path:
    path = task_path(data_root, package)
    if not (path / "train.parquet").is_file():
        raise SmtError(f"no task data for {package.name} in {path}; run `smt data fetch` first")
    return path


def run_once(package: Package, data: Path, seed: int, overrides: list[str], variant: str) -> Run:
    """Train ``package`` on the task in ``data`` through its own CLI; test metrics, cost and capacity."""
    cli = PackageCLI(package.path)
    with scratch_dir("quality") as tmp:
        out = Path(tmp) / "run"
        overrides = [f"seed={seed}", *overrides]
        trained, test = cli.train_and_test(
            data / "train.parquet", data / "valid.parquet", data / "test.parquet", out, overrides
        )
        capacity = cli.run_capacity(trained, out)
    return Run(package.name, variant, seed, test.events, trained.train_seconds, trained.steps, capacity, trained.valid)


def relative_ne_change(candidate: float, baseline: float) -> float:
    """(NE_candidate − NE_baseline) / NE_baseline, in percent; negative is better (Meta's convention)."""
    return 100.0 * (candidate - baseline) / baseline


@dataclass(frozen=True)
class Variant:
    """A named change to evaluate: template answers (re-render) and/or training overrides (``key=value``)."""

    name: str
    answers: dict = field(default_factory=dict)
    training: tuple[str, ...] = ()


def parse_variant(spec: str, questions: set[str]) -> Variant:
    """``NAME:key=value,key=value``; keys that are template questions are answers, the rest training options."""
    name, _, items = spec.partition(":")
    if not name or name == "default" or not any(items.split(",")):
        raise SmtError(
            f"variant {spec!r} must look like NAME:key=value[,key=value…] with a NAME other than 'default', "
            "e.g. --variant wide:embedding_dim=32"
        )
    answers, training = {}, []
    for item in filter(None, items.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SmtError(f"variant {spec!r}: {item!r} must look like key=value")
        if key in questions:
            answers[key] = value if value == "match" else yaml.safe_load(value)
        else:
            training.append(item)
    return Variant(name, answers, tuple(training))


def template_questions(repo: TemplateRepo) -> set[str]:
    return set(questions(repo.root))


@contextlib.contextmanager
def with_answers(repo: TemplateRepo, package: Package, answers: dict, commit: str | None = None) -> Iterator[Package]:
    """The package re-rendered with changed answers, its own files kept: from the working-tree template, or
    from the template at ``commit`` (qualification renders at the package's own version)."""
    if not answers:
        yield package
        return
    with repo.snapshot(commit) as template_dir, scratch_dir("variant") as tmp:
        merged = {**package.questions, **answers}
        out = render_answers(template_dir, merged, Path(tmp) / package.name)
        patterns = model_owned_patterns(template_dir, merged)
        for path in package.path.rglob("*"):
            rel = path.relative_to(package.path).as_posix()
            if path.is_file() and is_model_owned(rel, patterns):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out / rel)
        _keep_source(out, package)
        yield load_package(out)


def _keep_source(rendered: Path, package: Package) -> None:
    """The re-render records the package's own ``_src_path``, not the temporary template copy's: the variant
    is the package at its template, and its content (what the run cache keys on) is the same every time."""
    answers = rendered / ".copier-answers.yml"
    source = package.answers.get("_src_path")
    if source is None or not answers.is_file():
        return
    lines = answers.read_text().splitlines(keepends=True)
    fixed = [f"_src_path: {source}\n" if line.startswith("_src_path:") else line for line in lines]
    answers.write_text("".join(fixed))


# Peers run side by side with the template (`--peers`); each runner lives in scaffold/peers/.
PEERS = {"DeepFM": "deepctr", "DCN": "deepctr", "WDL": "deepctr", "LightGBM": "lightgbm"}


def run_peer(peer: str, package: Package, data: Path, seed: int) -> Run:
    """A peer library on the package's task, through the package's own features.yaml; test metrics."""
    if peer not in PEERS:
        raise SmtError(f"unknown peer {peer!r}; choose from {sorted(PEERS)}")
    features = package.path / "src" / package.name / "features.yaml"
    args = [sys.executable, "-m", f"scaffold.peers.{PEERS[peer]}", "--data", str(data), "--features", str(features)]
    args += ["--seed", str(seed)] + (["--model", peer] if PEERS[peer] == "deepctr" else [])
    proc = subprocess.run(runner.dies_with_us(args), capture_output=True, text=True)  # ends with us
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise SmtError(f"peer {peer} failed on {package.name}: {last[0]} (`pip install -e .[bench]`?)")
    result = json.loads(lines[-1])
    test = {event: EventMetrics.from_dict(m) for event, m in result["test"].items()}
    return Run(package.name, f"peer {result['peer']}", seed, test, result["train_seconds"], 0, None)


# The per-model baseline of issue #4: a plain DNN (concat, plain MLP, one tower, dense features as one raw
# vector) at the template's FLOPs, with its learning rate and MLP shape tuned on this task's valid split alone.
# It names every answer a template technique switches, so an adopted default never leaks into the baseline, and
# trains without embedding L2 or weight averaging (the regularisation techniques of the catalogue are the
# template's, not a plain DNN's).
BASELINE_TRAINING = ("embedding_weight_decay=0", "weight_averaging=0")
BASELINE_SHAPES = ([256, 128], [512], [128, 128, 128])
BASELINE_LRS = (1e-3, 2e-3, 5e-3)


def parse_grid(shapes: str, lrs: str) -> tuple[list[list[int]], list[float]]:
    """``"256x128,512"`` and ``"1e-3,2e-3"`` → ([[256, 128], [512]], [0.001, 0.002]), or a clear error."""
    try:
        parsed_shapes = [[int(n) for n in shape.split("x")] for shape in shapes.split(",") if shape]
        parsed_lrs = [float(lr) for lr in lrs.split(",") if lr]
    except ValueError:
        raise SmtError(
            f"baseline grid: shapes like 256x128,512 and lrs like 1e-3,2e-3; got {shapes!r} / {lrs!r}"
        ) from None
    if not parsed_shapes or not parsed_lrs or any(n < 1 for s in parsed_shapes for n in s):
        raise SmtError("baseline grid needs at least one shape of positive sizes and one learning rate")
    return parsed_shapes, parsed_lrs


def baseline_answers(shape: list[int], flops: int) -> dict:
    return {
        "interaction": "concat",
        "towers": "single",
        "mlp_block": "plain",
        "numeric_embedding": "none",
        "over_arch": shape,
        "flops_budget": flops,
    }


def tune_baseline(
    repo: TemplateRepo,
    package: Package,
    data: Path,
    flops: int,
    shapes=BASELINE_SHAPES,
    lrs=BASELINE_LRS,
    on_trial=None,
) -> tuple[dict, str]:
    """The (answers, lr) of the grid point with the best mean valid NE (seed 0)."""
    best = None
    for shape, lr in itertools.product(shapes, lrs):
        if on_trial:
            on_trial(shape, lr)
        with with_answers(repo, package, baseline_answers(shape, flops)) as candidate:
            run = run_once(candidate, data, 0, [f"lr={lr}", *BASELINE_TRAINING], "tuning")
        ne = mean_ne(run.valid)
        if best is None or ne < best[0]:
            best = (ne, shape, lr)
    return baseline_answers(best[1], flops), f"lr={best[2]}"


@dataclass(frozen=True)
class QualityPlan:
    """What `smt bench quality` runs per package: variants over seeds, and the rows beside them."""

    variants: tuple[Variant, ...] = (Variant("default"),)
    seeds: int = 3
    previous: str | None = None  # a git ref: the packages as committed there
    baseline: tuple[list[list[int]], list[float]] | None = None  # (shapes, lrs) of the tuned per-model DNN
    peers: tuple[str, ...] = ()


def bench_quality(
    repo: TemplateRepo, packages: list[Package], data_root: Path, plan: QualityPlan, on_status=lambda text: None
) -> list[Summary]:
    """Every package × variant × seed through the package's own CLI, then the comparison rows of ``plan``.

    A variant with ``flops_budget=match`` is sized to the first variant's dense FLOPs/example (neutral capacity).
    """
    summaries = []
    for package in packages:
        data = task_dir(data_root, package)
        default_flops = None
        for variant in plan.variants:
            answers = dict(variant.answers)
            if answers.get("flops_budget") == "match":
                answers["flops_budget"] = int(default_flops)
            summary = Summary(package.name, variant.name)
            with with_answers(repo, package, answers) as candidate:
                for seed in range(plan.seeds):
                    on_status(f"{package.name} / {variant.name} / seed {seed}")
                    summary.runs.append(run_once(candidate, data, seed, list(variant.training), variant.name))
            default_flops = default_flops or summary.runs[0].capacity.dense_flops_per_example
            summaries.append(summary)
        summaries += _comparison_rows(repo, package, data, int(default_flops), plan, on_status)
    return summaries


def _comparison_rows(repo, package: Package, data: Path, flops: int, plan: QualityPlan, on_status) -> list[Summary]:
    """The rows beside the variants: the previous version, the tuned per-model baseline, the peers."""
    rows = []
    if plan.previous:
        summary = Summary(package.name, f"previous ({plan.previous})")
        with at_version(package, plan.previous) as old:
            for seed in range(plan.seeds):
                on_status(f"{package.name} / previous / seed {seed}")
                summary.runs.append(run_once(old, data, seed, [], summary.variant))
        rows.append(summary)
    if plan.baseline:
        shapes, lrs = plan.baseline

        def trial(shape, lr):
            on_status(f"{package.name} / tuning baseline {shape} lr={lr}")

        answers, lr = tune_baseline(repo, package, data, flops, shapes, lrs, trial)
        summary = Summary(package.name, f"baseline DNN {answers['over_arch']} {lr}")
        with with_answers(repo, package, answers) as candidate:
            for seed in range(plan.seeds):
                on_status(f"{package.name} / baseline / seed {seed}")
                summary.runs.append(run_once(candidate, data, seed, [lr, *BASELINE_TRAINING], summary.variant))
        rows.append(summary)
    for peer in plan.peers:
        summary = Summary(package.name, peer)
        for seed in range(plan.seeds):
            on_status(f"{package.name} / {peer} / seed {seed}")
            summary.runs.append(run_peer(peer, package, data, seed))
        summary.variant = summary.runs[0].variant
        rows.append(summary)
    return rows


@contextlib.contextmanager
def at_version(package: Package, ref: str) -> Iterator[Package]:
    """The package as committed at ``ref`` (e.g. the previous template version's sync), in a temp dir."""
    root = package.git_root
    commit = _git.resolve(root, ref)
    if commit is None:
        raise SmtError(f"unknown git ref {ref!r}; pass a commit or tag of this repository to --previous")
    with scratch_dir("previous") as tmp:
        _git.export_tree(root, commit, Path(tmp), package.git_relpath)
        path = Path(tmp) / package.git_relpath
        if not (path / ".copier-answers.yml").is_file():
            raise SmtError(f"{package.name} does not exist at {ref}; pick a later --previous")
        yield load_package(path)


def plot(summaries: list[Summary], path: Path) -> None:
    """A PNG of mean test NE (± std over seeds) per package and variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    packages = sorted({s.package for s in summaries})
    variants = list(dict.fromkeys(s.variant for s in summaries))
    fig, axes = plt.subplots(1, len(packages), figsize=(4.2 * len(packages), 4.6), squeeze=False)
    for ax, package in zip(axes[0], packages):
        rows = [s for s in summaries if s.package == package]
        names = [s.variant for s in rows]
        means, stds = zip(*(s.stat("ne") for s in rows))
        colors = [plt.cm.tab10(variants.index(n) % 10) for n in names]
        ax.bar(range(len(rows)), means, yerr=stds, color=colors, capsize=3)
        ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=8)
        low = min(m - s for m, s in zip(means, stds))
        ax.set_ylim(low - 0.05 * abs(low), max(m + s for m, s in zip(means, stds)) * 1.01)
        ax.set_title(package, fontsize=10)
        ax.set_ylabel("test NE (lower is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
