"""`smt sync`: bring packages to a template version, each one transactionally, with zero hand edits.

Per package: render its answers at its recorded version (base) and at the target (theirs) from plain
snapshots of the template (``git archive``, once per version per sync; no clone of the repository), plan a
3-way merge file by file (merge.py), and only then write. A conflict writes nothing. An applied update is
checked by the package's own fast tests; a failure puts the old files back. Every write is a transaction
(journal.py): a killed sync is rolled back by the next run, which never touches a file the sync did not
write, and then brings the package to the target in the same run. One sync at a time holds the fleet lock
(lock.py). Planning runs in parallel worker processes that die with their parent; writing is sequential, so
the git index is never raced.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import yaml

from . import _copier, _faults, _git, journal, migrations, runner
from ._git import RELEASE_TAG
from .errors import InvalidAnswers, SmtError, TemplateDirty
from .fleet import Package, discover, git_roots
from .lock import fleet_lock
from .merge import Conflict, MergePlan, plan_update
from .scratch import scratch_dir
from .status import render_answers
from .template import TemplateRepo, check_answer_keys, model_owned_patterns
from .workers import map_in_workers


class Outcome(StrEnum):
    """What a sync did to one package (its value is what tables and --json show)."""

    UPDATED = "updated"
    UP_TO_DATE = "up to date"
    WOULD_UPDATE = "would update"
    CONFLICT = "conflict"
    FAILED = "failed"
    REFUSED = "refused"


UPDATED, UP_TO_DATE, WOULD_UPDATE = Outcome.UPDATED, Outcome.UP_TO_DATE, Outcome.WOULD_UPDATE
CONFLICT, FAILED, REFUSED = Outcome.CONFLICT, Outcome.FAILED, Outcome.REFUSED
REACHED = {UPDATED, UP_TO_DATE}
CACHES = ("__pycache__", ".pytest_cache")


@dataclass
class SyncResult:
    name: str
    from_version: str | None
    to_version: str
    result: Outcome
    files_changed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reason: str = ""
    conflicts: list[Conflict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Job:
    """One package to plan (picklable: runs in a worker process)."""

    name: str
    path: Path
    answers: dict
    overrides: dict
    base_template: Path
    target_template: Path
    target_version: str
    trust: bool = False
    git_root: Path = Path(".")
    git_rel: str = "."


@dataclass
class _Planned:
    job: _Job
    plan: MergePlan | None
    answers_text: str = ""
    error: str = ""
    refused: bool = False
    seconds: float = 0.0


def sync_fleet(
    repo: TemplateRepo,
    names: list[str] | None = None,
    ref: str | None = None,
    jobs: int | None = None,
    dry_run: bool = False,
    run_tests: bool = True,
    overrides: dict | None = None,
    on_result: Callable[[SyncResult], None] | None = None,
    trust: bool = False,
    fleet_file: Path | None = None,
) -> list[SyncResult]:
    """Sync ``names`` (default: the whole fleet) to template version ``ref`` (default: the latest release, else HEAD).

    Holds the fleet lock throughout; first finishes what a killed sync left (never in a dry run), and only
    then reads the packages. ``trust`` lets the template's ``_migrations`` run their commands (as
    ``copier update --trust``).
    """
    with fleet_lock(repo.root, "smt sync"):
        roots = git_roots(repo, fleet_file)
        open_tx = [tx for tx in map(journal.pending, roots) if tx] if dry_run else []
        if not dry_run:
            recover_fleet(roots)
        packages = discover(repo, names, fleet_file)
        target_sha, target_version = _target(repo, ref)
        _preflight(repo, packages)
        results: dict[str, SyncResult] = {}
        todo: list[tuple[Package, str]] = []
        for package in packages:
            early = _pending_in_dry_run(package, open_tx, target_version) or _triage(
                repo, package, target_sha, target_version, overrides or {}
            )
            if early is None:
                todo.append((package, repo.resolve(package.version)))
            else:
                results[package.name] = early
                on_result and on_result(early)
        with ExitStack() as stack:
            shas = {target_sha, *(s for _, s in todo)}
            snapshots = {sha: stack.enter_context(repo.snapshot(sha)) for sha in shas}
            check_answer_keys(snapshots[target_sha], overrides or {}, "--set")
            planned = [
                _job(p, overrides or {}, snapshots[sha], snapshots[target_sha], target_version, trust)
                for p, sha in todo
            ]
            for outcome in _plan_all(planned, jobs):
                result = _finish(outcome, dry_run, run_tests)
                results[result.name] = result
                on_result and on_result(result)
        return [results[p.name] for p in packages]


def recover_fleet(roots: list[Path], force: bool = False) -> list[journal.Recovered]:
    """Finish what killed syncs left in each repository (journal.py); what was done, per repository."""
    return [done for done in (journal.recover(root, force) for root in roots) if done is not None]


def _pending_in_dry_run(package: Package, open_tx: list[journal.Pending], version: str) -> SyncResult | None:
    """In a dry run, a package that a killed sync left half-updated is reported, not planned."""
    for tx in open_tx:
        if tx.package_dir.resolve() == package.path.resolve():
            return SyncResult(package.name, package.version, version, REFUSED, reason=journal.PENDING)
    return None


def _job(package: Package, overrides: dict, base: Path, target: Path, version: str, trust: bool) -> _Job:
    return _Job(
        package.name,
        package.path,
        package.answers,
        overrides,
        base,
        target,
        version,
        trust,
        package.git_root,
        package.git_relpath,
    )


def _target(repo: TemplateRepo, ref: str | None) -> tuple[str, str]:
    if ref is None:
        if not _git.latest_version_tag(repo.root) and repo.dirty_files():
            raise TemplateDirty("the template has uncommitted changes; commit them first (sync renders commits)")
        ref = repo.default_ref()
    sha = repo.resolve(ref)
    if sha is None:
        raise SmtError(f"template version {ref!r} not found; see `git tag` (or fetch tags)")
    return sha, _git.describe(repo.root, sha)


def _preflight(repo: TemplateRepo, packages: list[Package]) -> None:
    """Refuse to start while any repository of the fleet has unmerged files, or the fleet has stray .rej files."""
    for root in sorted({repo.root, *(p.git_root for p in packages)}):
        unmerged = _git.unmerged_paths(root)
        if unmerged:
            raise SmtError(f"{root} has unmerged files ({', '.join(unmerged[:3])}); resolve or reset them first")
    dirs = [repo.fleet_dir, *(p.path for p in packages)]
    strays = sorted({str(r) for d in dirs if d.is_dir() for r in d.rglob("*.rej")})
    if strays:
        raise SmtError(f"stray rejected-hunk files in the fleet ({', '.join(strays[:3])}); resolve and delete them")


def _triage(repo, package: Package, target_sha: str, target_version: str, overrides: dict) -> SyncResult | None:
    """A result for packages that need no planning (up to date, unknown or newer version, dirty), else None."""
    base = SyncResult(package.name, package.version, target_version, UP_TO_DATE)
    if package.problem:
        base.result, base.reason = FAILED, package.problem
        return base
    sha = repo.resolve(package.version) if package.version else None
    changes_answers = any(package.answers.get(k) != v for k, v in overrides.items())
    if sha is None:
        base.result, base.reason = FAILED, f"recorded version {package.version!r} is not in this clone (fetch tags)"
    elif sha == target_sha and not changes_answers:
        return base
    elif sha != target_sha and not _git.is_ancestor(repo.root, sha, target_sha):
        base.result, base.reason = REFUSED, f"{target_version} is not newer than {package.version}; no downgrades"
    elif not changes_answers and not repo.changed_between(sha, target_sha) and not _repins(package, target_version):
        return base  # same template tree: a later commit elsewhere in the repository is not a new version
    elif _git.dirty_paths(package.git_root, package.git_relpath):
        base.result, base.reason = REFUSED, "uncommitted changes in the package; commit or stash them first"
    else:
        return None
    return base


def _repins(package: Package, target_version: str) -> bool:
    """A release names the tree the package already has: record it (copier's migrations need release names)."""
    return bool(RELEASE_TAG.match(target_version)) and package.version != target_version


def _plan_all(jobs_list: list[_Job], jobs: int | None):
    for k, planned in enumerate(map_in_workers(_plan_one, jobs_list, jobs), start=1):
        yield planned
        _faults.point(f"sync:planned:{k}")


def _plan_one(job: _Job) -> _Planned:
    """Render base and target, run trusted migrations on a scratch copy, plan the merge (no writes)."""
    started = time.perf_counter()
    try:
        with scratch_dir("sync") as tmp:
            todo = migrations.applicable(
                job.target_template, job.answers, str(job.answers.get("_commit")), job.target_version
            )
            if todo and not job.trust:
                names = ", ".join(str(m.context.get("version")) for m in todo)
                reason = f"the template has migrations ({names}) that run commands; rerun with --trust"
                return _Planned(job, None, error=reason, refused=True, seconds=time.perf_counter() - started)
            mine, answers = job.path, job.answers
            if todo:
                mine = Path(shutil.copytree(job.path, Path(tmp) / "migrated", ignore=shutil.ignore_patterns(*CACHES)))
                migrations.run(todo, mine)
                answers = _copier.read_answers(mine)
            base = render_answers(job.base_template, job.answers, Path(tmp) / "base")
            theirs = render_answers(job.target_template, {**answers, **job.overrides}, Path(tmp) / "theirs")
            patterns = model_owned_patterns(job.target_template, answers)
            plan = plan_update(base, theirs, mine, patterns)
            if mine != job.path:
                _add_migration_changes(plan, mine, job.path)
            answers_text = _answers_text(theirs, job.answers.get("_src_path", "."), job.target_version)
    except (InvalidAnswers, SmtError) as exc:
        return _Planned(job, None, error=str(exc), seconds=time.perf_counter() - started)
    current = (job.path / _copier.ANSWERS_FILE).read_text()
    if answers_text != current:
        plan.writes[_copier.ANSWERS_FILE] = answers_text.encode()
    return _Planned(job, plan, answers_text, seconds=time.perf_counter() - started)


def _add_migration_changes(plan: MergePlan, migrated: Path, package: Path) -> None:
    """Files a migration changed in the scratch copy that the merge plan does not already rewrite."""
    before = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file() and not _cache(p)}
    after = {p.relative_to(migrated).as_posix() for p in migrated.rglob("*") if p.is_file() and not _cache(p)}
    planned = {*plan.writes, *plan.deletes, _copier.ANSWERS_FILE}
    for rel in sorted((before | after) - planned):
        if rel not in after:
            plan.deletes.append(rel)
        elif rel not in before or (migrated / rel).read_bytes() != (package / rel).read_bytes():
            plan.writes[rel] = (migrated / rel).read_bytes()


def _cache(path: Path) -> bool:
    return any(part in CACHES for part in path.parts)


def _answers_text(render: Path, src_path: str, version: str) -> str:
    """The answers file copier would write at ``version``: the render's own, with ``_commit`` and ``_src_path``."""
    text = (render / _copier.ANSWERS_FILE).read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    answers = _copier.user_answers(yaml.safe_load(text))
    data = {"_commit": version, "_src_path": src_path, **answers}
    return header + yaml.dump(data, indent=4, allow_unicode=True, default_flow_style=False)


def _finish(planned: _Planned, dry_run: bool, run_tests: bool) -> SyncResult:
    job, plan = planned.job, planned.plan
    result = SyncResult(job.name, job.answers.get("_commit"), job.target_version, UPDATED, seconds=planned.seconds)
    if plan is None:
        result.result, result.reason = REFUSED if planned.refused else FAILED, planned.error
    elif plan.conflicts:
        result.result, result.conflicts = CONFLICT, plan.conflicts
        result.reason = "; ".join(f"{c.path}: {c.reason}" for c in plan.conflicts)
    elif dry_run:
        result.result, result.files_changed = WOULD_UPDATE, plan.changed
    else:
        started = time.perf_counter()
        result.files_changed = plan.changed
        failure = _apply(job, plan, run_tests)
        if failure:
            result.result, result.reason, result.files_changed = FAILED, failure, []
        result.seconds += time.perf_counter() - started
    return result


def _apply(job: _Job, plan: MergePlan, run_tests: bool) -> str:
    """Write the plan as a transaction, check the package, stage exactly the files it changed; on any failure
    put the old files back. '' = success, else the reason."""
    root, rel = job.git_root, job.git_rel
    try:
        _git.check_index_unlocked(root)  # staging would fail at the end: refuse before writing anything
        tx = journal.Transaction.begin(root, rel, plan.writes, plan.deletes)
    except SmtError as exc:
        return f"{exc}; package left as it was"
    try:
        tx.write(plan.writes, plan.deletes)
        failure = _check_package(job.path) if run_tests else ""
        _faults.point("sync:tested")
        if not failure:
            _git.stage(root, [path if rel == "." else f"{rel}/{path}" for path in plan.changed])
            _faults.point("sync:staged")
    except SmtError as exc:
        failure = f"{exc}; package left as it was"
    except BaseException:
        tx.rollback()
        raise
    if failure:
        tx.rollback()
    else:
        tx.close()
    return failure


def _check_package(package: Path) -> str:
    """The package's own fast tests after the update; '' when they pass, else the reason."""
    proc = runner.run_tests(package, "-m", "not slow and not distributed", "-x", "-q")
    if proc.returncode == 0:
        return ""
    return f"the package's tests fail after the update ({_first_failure(proc)}); package left as it was"


def _first_failure(proc) -> str:
    """pytest's first ``FAILED``/``ERROR`` summary line, else its last line that is not a ``!!!`` banner."""
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    plain = [line for line in lines if not line.startswith("!")]
    return (failed or plain[-1:] or [f"exit {proc.returncode}"])[0]
