"""Qualification: is a technique better for the fleet? Decided once, on a representative subset (DESIGN §4, §7).

Per package of the subset: the *incumbent* is the package exactly as it is (its model-owned files and
``train.yaml`` included); the *candidate* is the same package with the technique switched on, re-rendered
from the template at the package's own version and sized to the incumbent's dense FLOPs/example (neutral
serving capacity) when the technique changes the model. Both are trained through the package's own CLI on the
same seeds; the decision is made on validation NE (mean over events), test NE is reported beside it.

The decision rule (every threshold printed with the decision, each overridable):
- paired by seed, per package: ΔNE_s = 100 · (NE_candidate − NE_incumbent) / NE_incumbent (negative = better);
- the fleet figure is the mean over packages of each package's mean ΔNE; its confidence interval comes from a
  bootstrap that resamples seeds within each package (paired: a seed's incumbent and candidate stay together);
- accept only if the fleet figure is ≤ −min_gain, the interval's upper end is < 0, and no package's mean
  ΔNE is above +max_regression; one seed never suffices (seed noise cannot be bounded).

The *guard*: when the subset stands for a larger fleet, the held-out packages (those the representatives
stand for) also run both arms, on fewer seeds (``Plan.guard_seeds``, default 1). They do not enter the fleet
figure, which stays the subset's; but a held-out package whose mean ΔNE is above +guard_regression rejects
the technique. A cluster's representative can miss how one of its members responds: embedding L2 at v0.6.4
helped movielens_like (−0.6%) and cost clothing_recommend, in its cluster, +7% (ledger 297f4d121de6).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import runner, smt_cache
from .errors import InvalidAnswers, SmtError
from .fleet import Package
from .ledger import QUALIFICATION, new_record
from .package_cli import PackageCLI, mean_ne
from .quality import relative_ne_change, task_dir, with_answers
from .scratch import scratch_dir
from .techniques import Technique, is_on
from .template import TemplateRepo


@dataclass(frozen=True)
class Rule:
    min_gain: float = 0.1  # percent: the fleet's mean ΔNE must be at most −min_gain
    max_regression: float = 0.5  # percent: no package's mean ΔNE may be above this
    confidence: float = 0.95
    resamples: int = 10_000
    guard_regression: float = 1.0  # percent: no held-out package's mean ΔNE (on its guard seeds) may be above

    def text(self) -> str:
        return (
            f"accept iff mean ΔNE ≤ −{self.min_gain:g}%, its {self.confidence:.0%} bootstrap upper bound < 0, "
            f"every package's ΔNE ≤ +{self.max_regression:g}% (paired by seed, ≥ 2 seeds), "
            f"and every held-out package's ΔNE ≤ +{self.guard_regression:g}%"
        )


@dataclass(frozen=True)
class TrainJob:
    """One training of one arm of one package on one seed (picklable: runs in a worker process or on Ray)."""

    package: str
    arm: str  # "incumbent" | "candidate"
    path: str
    seed: int
    data: str  # the task directory: train/valid/test.parquet
    overrides: tuple[str, ...] = ()
    threads: int = 1


@dataclass(frozen=True)
class JobResult:
    package: str
    arm: str
    seed: int
    valid_ne: float
    test_ne: float
    seconds: float  # wall time of training and testing (machine time of this job)
    steps: int
    cached: bool = False


def run_job(job: TrainJob) -> JobResult:
    """Train and test through the package's own CLI (a subprocess of the worker)."""
    started = time.perf_counter()
    cli, data = PackageCLI(Path(job.path), threads=job.threads), Path(job.data)
    with scratch_dir("qualify") as tmp:
        out = Path(tmp) / "run"
        overrides = [f"seed={job.seed}", *job.overrides]
        trained, test = cli.train_and_test(
            data / "train.parquet", data / "valid.parquet", data / "test.parquet", out, overrides
        )
    seconds = time.perf_counter() - started
    return JobResult(job.package, job.arm, job.seed, mean_ne(trained.valid), test.mean_ne, seconds, trained.steps)


# --- executors: a local process pool by default, Ray when given a cluster address (no home-made scheduler) ---


def run_local(jobs: list[TrainJob], workers: int, on_done: Callable[[JobResult], None]) -> list[JobResult]:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results = []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in as_completed(futures):
            result = future.result()
            on_done(result)
            results.append(result)
    return results


def run_ray(jobs: list[TrainJob], address: str, on_done: Callable[[JobResult], None]) -> list[JobResult]:
    """The same jobs as Ray tasks (``address``: ``local`` starts a local instance; else a cluster's address).

    Workers must see the package and data paths (a shared filesystem, as on a cluster's NFS)."""
    try:
        import ray
    except ImportError:
        raise SmtError(
            "--ray needs Ray: pip install 'ray>=2.9' (or drop --ray to use the local process pool)"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"num_cpus": os.cpu_count()} if address == "local" else {"address": address}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        remote = ray.remote(run_job)
        pending = {remote.options(num_cpus=job.threads).remote(job): job for job in jobs}
        results = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                result = ray.get(ref)
                on_done(result)
                results.append(result)
        return results
    finally:
        if started_here:
            ray.shutdown()


def measure_flops(paths: list[Path], workers: int, capacities: Path | None) -> dict[Path, float | SmtError]:
    """Dense FLOPs/example of each package at ``paths``, or the error that says why it cannot be built. Each
    measure is a process of its own (about 2 s: torch's import and the budget fit), so ``workers`` of them
    run at once; ``capacities`` keeps them across commands (see ``PackageCLI.capacity``)."""
    from concurrent.futures import ThreadPoolExecutor

    def measure(path: Path) -> float | SmtError:
        try:
            return PackageCLI(path, capacities=capacities).capacity().dense_flops_per_example
        except SmtError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(paths, pool.map(measure, paths)))


# --- the run cache: an incumbent trained once per (package content, data, seed) serves every qualification ---


def _cache_key(job: TrainJob, tree: str) -> str:
    data = Path(job.data)
    stats = [
        (f, (data / f).stat().st_size, (data / f).stat().st_mtime_ns)
        for f in ("train.parquet", "valid.parquet", "test.parquet")
    ]
    raw = json.dumps([tree, stats, job.seed, list(job.overrides)], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass
class RunCache:
    """JSON files under ``root`` (``.smt-cache/runs`` of the repository, git-ignored); ``None`` root = off."""

    root: Path | None

    def get(self, key: str) -> JobResult | None:
        if self.root is None or not (self.root / f"{key}.json").is_file():
            return None
        try:
            return JobResult(**{**json.loads((self.root / f"{key}.json").read_text()), "cached": True})
        except (json.JSONDecodeError, TypeError):
            return None  # a corrupt entry is a miss; it is rewritten

    def put(self, key: str, result: JobResult) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"  # per process: two qualifications may write one key
        tmp.write_text(json.dumps(asdict(result)))
        os.replace(tmp, self.root / f"{key}.json")


# --- statistics ---


def bootstrap_mean(deltas: list[list[float]], confidence: float, resamples: int, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean over packages of each package's mean over seeds; seeds are resampled
    within each package (``deltas[p][s]``: package p, seed s)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for row in deltas:
        values = np.asarray(row, dtype=float)
        idx = rng.integers(0, len(values), size=(resamples, len(values)))
        means += values[idx].mean(axis=1)
    means /= len(deltas)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


@dataclass
class PackageOutcome:
    package: str
    seeds: list[int]
    incumbent_valid: list[float]
    candidate_valid: list[float]
    incumbent_test: list[float]
    candidate_test: list[float]
    incumbent_flops: float
    candidate_flops: float
    delta: float = 0.0  # mean over seeds of the paired relative ΔNE on valid, percent
    ci: tuple[float, float] = (0.0, 0.0)
    delta_test: float = 0.0
    deltas: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci)
        return d


def decide(outcomes: list[PackageOutcome], rule: Rule, guard: list[PackageOutcome] = ()) -> tuple[dict, str, list[str]]:
    """The aggregate (mean ΔNE, interval, test ΔNE) of ``outcomes``, the decision and its reasons; ``guard``
    (held-out packages) can only reject."""
    for o in [*outcomes, *guard]:
        o.deltas = [relative_ne_change(c, i) for c, i in zip(o.candidate_valid, o.incumbent_valid)]
        o.delta = sum(o.deltas) / len(o.deltas)
        o.delta_test = sum(relative_ne_change(c, i) for c, i in zip(o.candidate_test, o.incumbent_test)) / len(o.deltas)
        o.ci = bootstrap_mean([o.deltas], rule.confidence, rule.resamples)
    mean = sum(o.delta for o in outcomes) / len(outcomes)
    low, high = bootstrap_mean([o.deltas for o in outcomes], rule.confidence, rule.resamples)
    aggregate = {
        "delta": mean,
        "ci": [low, high],
        "delta_test": sum(o.delta_test for o in outcomes) / len(outcomes),
        "seeds": min(len(o.deltas) for o in outcomes),
    }
    reasons = []
    if aggregate["seeds"] < 2:
        reasons.append("one seed per package cannot bound seed noise: rerun with --seeds 2 or more")
    if mean > -rule.min_gain:
        reasons.append(f"mean ΔNE {mean:+.3f}% is not a gain of at least {rule.min_gain:g}%")
    if high >= 0:
        reasons.append(f"the {rule.confidence:.0%} interval [{low:+.3f}%, {high:+.3f}%] is not below zero")
    for o in outcomes:
        if o.delta > rule.max_regression:
            reasons.append(f"{o.package} regresses {o.delta:+.3f}% (bound +{rule.max_regression:g}%)")
    for o in guard:
        if o.delta > rule.guard_regression:
            reasons.append(
                f"held-out {o.package} regresses {o.delta:+.3f}% on {len(o.deltas)} seed(s) "
                f"(guard bound +{rule.guard_regression:g}%)"
            )
    if not reasons:
        held_out = f", no held-out package beyond +{rule.guard_regression:g}%" if guard else ""
        reasons.append(
            f"mean ΔNE {mean:+.3f}% [{low:+.3f}%, {high:+.3f}%], no package beyond +{rule.max_regression:g}%" + held_out
        )
        return aggregate, "accept", reasons
    return aggregate, "reject", reasons


def without_effect(results: dict[str, dict]) -> list[str]:
    """The packages of ``results`` (name → ``PackageOutcome.to_dict()``) whose candidate gave the incumbent's valid
    and test NE on every seed: the technique changed nothing in their training (a table optimizer's option on a
    model without tables). They stay in the mean: adopting the technique would change nothing for them either."""
    return [
        name
        for name, r in results.items()
        if r["candidate_valid"] == r["incumbent_valid"] and r["candidate_test"] == r["incumbent_test"]
    ]


# --- the qualification itself ---


@dataclass(frozen=True)
class Plan:
    seeds: int = 3
    jobs: int = 1
    threads: int = 1
    ray: str | None = None
    rule: Rule = Rule()
    cache: bool = True
    guard_seeds: int = 1  # seeds per arm on each held-out package (0: no guard)


def qualify(
    repo: TemplateRepo,
    technique: Technique,
    packages: list[Package],
    data_root: Path,
    plan: Plan,
    on_status: Callable[[str], None] = lambda text: None,
    subset: dict | None = None,
    guard: list[Package] = (),
) -> dict:
    """Incumbent vs candidate on ``packages`` over seeds, and on the held-out ``guard`` packages over
    ``plan.guard_seeds``; the ledger record of the decision (not yet appended)."""
    if not technique.switchable:
        raise SmtError(f"{technique.id} is a per-feature schema option; smt cannot switch it on for a package")
    version = repo.default_ref()
    guard = [p for p in guard if p.name not in {q.name for q in packages}] if plan.guard_seeds else []
    behind = [f"{p.name} ({p.version})" for p in [*packages, *guard] if p.version != version]
    if behind:
        raise SmtError(
            f"qualify compares at one template version ({version}); behind: {', '.join(behind)}: "
            "run `smt sync` first"
        )
    seeds_of = {p.name: plan.seeds for p in packages} | {p.name: plan.guard_seeds for p in guard}
    skipped = {p.name: "already on" for p in [*packages, *guard] if is_on(technique, p)}
    todo = [p for p in [*packages, *guard] if p.name not in skipped]
    cache = RunCache(smt_cache.runs(repo.root) if plan.cache else None)
    capacities = smt_cache.capacities(repo.root) if plan.cache else None
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        arms, jobs, flops = {}, [], {}
        data_of = {package.name: task_dir(data_root, package) for package in todo}
        incumbent_flops = measure_flops([p.path for p in todo], plan.jobs, capacities)
        candidates = {}
        for package in todo:
            if isinstance(incumbent_flops[package.path], SmtError):
                raise incumbent_flops[package.path]
            answers = dict(technique.answers)
            if answers:
                answers["flops_budget"] = int(round(incumbent_flops[package.path]))
            try:
                candidates[package.name] = stack.enter_context(
                    with_answers(repo, package, answers, repo.resolve(version))
                )
            except InvalidAnswers as exc:
                skipped[package.name] = f"not applicable: {exc}"
        candidate_flops = measure_flops([c.path for c in candidates.values()], plan.jobs, capacities)
        for package in todo:
            if package.name not in candidates:
                continue
            candidate, data = candidates[package.name], data_of[package.name]
            if isinstance(candidate_flops[candidate.path], SmtError):  # the template says why in one line
                skipped[package.name] = f"not applicable at neutral capacity: {candidate_flops[candidate.path]}"
                continue
            flops[package.name] = (incumbent_flops[package.path], candidate_flops[candidate.path])
            overrides = tuple(f"{k}={_value(v)}" for k, v in technique.training.items())
            arms[package.name] = (package, candidate)
            for seed in range(seeds_of[package.name]):
                jobs.append(TrainJob(package.name, "incumbent", str(package.path), seed, str(data), (), plan.threads))
                jobs.append(
                    TrainJob(package.name, "candidate", str(candidate.path), seed, str(data), overrides, plan.threads)
                )
        if not any(p.name in arms for p in packages):
            raise SmtError(f"no package of {[p.name for p in packages]} can qualify {technique.id}: {skipped}")
        trees = {str(p.path): runner.tree_hash(p.path) for pair in arms.values() for p in pair}
        results, todo_jobs, keys = [], [], {}
        for job in jobs:
            keys[job] = _cache_key(job, trees[job.path])
            hit = cache.get(keys[job])
            (results.append(hit) if hit else todo_jobs.append(job))
        total, done = len(jobs), [len(results)]

        key_of = {(j.package, j.arm, j.seed): keys[j] for j in todo_jobs}

        def finished(result: JobResult) -> None:  # cached at once: a killed qualification keeps what it ran
            cache.put(key_of[(result.package, result.arm, result.seed)], result)
            done[0] += 1
            on_status(f"{done[0]}/{total}: {result.package} {result.arm} seed {result.seed}")

        on_status(f"{len(results)}/{total} from the run cache")
        results += run_ray(todo_jobs, plan.ray, finished) if plan.ray else run_local(todo_jobs, plan.jobs, finished)
    outcomes = _outcomes(results, flops, seeds_of)
    held_out = {p.name for p in guard}
    guarded = [o for o in outcomes if o.package in held_out]
    outcomes = [o for o in outcomes if o.package not in held_out]
    aggregate, decision, reasons = decide(outcomes, plan.rule, guarded)
    return new_record(
        QUALIFICATION,
        technique=technique.id,
        candidate={"answers": technique.answers, "training": technique.training},
        template_version=version,
        packages=[o.package for o in outcomes],
        skipped=skipped,
        subset=subset,
        seeds=plan.seeds,
        rule=asdict(plan.rule),
        rule_text=plan.rule.text(),
        results={o.package: o.to_dict() for o in outcomes},
        guard={o.package: o.to_dict() for o in guarded},
        guard_seeds=plan.guard_seeds if guard else 0,
        no_effect=without_effect({o.package: o.to_dict() for o in [*outcomes, *guarded]}),
        aggregate=aggregate,
        decision=decision,
        reasons=reasons,
        machine_seconds=round(sum(r.seconds for r in results if not r.cached), 1),
        cached_runs=sum(r.cached for r in results),
        cached_seconds=round(sum(r.seconds for r in results if r.cached), 1),  # what those runs cost when made
        runs=len(results),
        wall_seconds=round(time.perf_counter() - started, 1),
        executor=f"ray {plan.ray}" if plan.ray else f"local pool of {plan.jobs}",
    )


def _value(value) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _outcomes(results: list[JobResult], flops: dict, seeds: dict[str, int]) -> list[PackageOutcome]:
    by = {(r.package, r.arm, r.seed): r for r in results}
    outcomes = []
    for name in sorted(flops):
        inc = [by[(name, "incumbent", s)] for s in range(seeds[name])]
        cand = [by[(name, "candidate", s)] for s in range(seeds[name])]
        outcomes.append(
            PackageOutcome(
                name,
                list(range(seeds[name])),
                [r.valid_ne for r in inc],
                [r.valid_ne for r in cand],
                [r.test_ne for r in inc],
                [r.test_ne for r in cand],
                *flops[name],
            )
        )
    return outcomes
