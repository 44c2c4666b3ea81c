"""Adoption: accepted techniques become template defaults, released and carried to every package (DESIGN §4).

One call does what a person would otherwise do by hand, in this order:
1. check: every technique has an accepted qualification at the current template version (or an override
   reason is given, and recorded); the template has no unreleased change; the fleet is clean and current;
2. per package, decide its pair state *before* the defaults move: ``already on``; ``opted out`` when the
   package pinned another value (an answer that differs from the old default, or the option in its own
   ``train.yaml``); ``not applicable`` when it follows the defaults but the template cannot size the new
   answers to its own dense FLOPs/example (it keeps the old value, pinned); else it is ``adopted``;
3. rewrite the defaults (``copier.yml`` answers, ``TrainConfig`` options), write the CHANGELOG entry with the
   evidence, commit, tag the release;
4. sync the fleet: followers of a changed answer get it (with their current dense FLOPs/example as the
   budget, so adoption stays at neutral serving capacity); everyone gets the new template;
5. record every (technique, package) pair in the ledger and commit the fleet and the ledger together.

A run killed after the release is finished by running the same command again (the latest release is then
this adoption's commit with no adoption record: steps 4–5 run). Pairs recorded ``not synced`` (a package whose
sync was refused, e.g. its tests failed) are finished the same way once the cause is fixed: the rerun syncs
just those packages to the latest release with the adopted answers at their own FLOPs and appends a record
that ``completes`` the first one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from packaging.version import Version

from . import _faults, _git, smt_cache
from .defaults import answer_default, config_path, set_answer_default, set_training_default, training_defaults
from .errors import SmtError
from .fleet import Package, discover, git_roots
from .ledger import ADOPTION, Ledger, append, ledger_path, new_record, pair_matrix, read
from .package_cli import PackageCLI
from .quality import at_version, with_answers
from .releases import RELEASES, releases_path
from .sync import REACHED, sync_fleet
from .techniques import Technique, is_default, is_on, pinned_training
from .template import TemplateRepo
from .versions import CHANGELOG, release

ADOPTED, OPTED_OUT, ALREADY_ON, NOT_SYNCED = "adopted", "opted out", "already on", "not synced"
NOT_APPLICABLE = "not applicable"


def next_version(repo: TemplateRepo) -> str:
    """The next minor release after the latest (a changed default is a new feature, not a fix)."""
    latest = _git.latest_version_tag(repo.root)
    if not latest:
        return "v0.1.0"
    v = Version(latest)
    return f"v{v.major}.{v.minor + 1}.0"


def pair_state(technique: Technique, package: Package, template_root: Path) -> str:
    """``already on`` / ``opted out`` / ``adopted`` for one package, judged against the *current* defaults."""
    if is_on(technique, package):
        return ALREADY_ON
    answers = package.questions
    for key in technique.answers:
        if answers.get(key) != answer_default(template_root, key):
            return OPTED_OUT
    if set(technique.training) & set(pinned_training(package)):
        return OPTED_OUT
    return ADOPTED


def evidence(ledger: Ledger, technique: Technique, version: str, reason: str | None) -> dict | None:
    """The accepted qualification at ``version`` that allows adopting ``technique``; None with a reason."""
    last = ledger.last_qualification(technique.id)
    same = bool(last) and last["candidate"] == {"answers": technique.answers, "training": technique.training}
    if last and last["decision"] == "accept" and last["template_version"] == version and same:
        return last
    if reason:
        return None
    if not last:
        why = "it was never qualified"
    elif not same:
        why = f"its last qualification {last['id']} tried {last['candidate']}, not the catalogue's switch"
    elif last["template_version"] != version:
        why = f"its last qualification is at {last['template_version']}, the template is at {version}"
    else:
        why = f"its qualification {last['id']} rejected it ({'; '.join(last['reasons'])})"
    raise SmtError(
        f"cannot adopt {technique.id}: {why}; run `smt qualify {technique.id}` (or pass --override-reason TEXT)"
    )


def changelog_text(version: str, entries: list[tuple[Technique, dict | None, str | None]]) -> str:
    lines = [f"## {version}", "Adopted as template defaults by `smt adopt` (the evidence is in ledger.jsonl)."]
    for technique, record, reason in entries:
        switch = technique.switch
        if record:
            a = record["aggregate"]
            lines.append(
                f"- `{technique.id}` ({switch}): qualification {record['id']} on {', '.join(record['packages'])}, "
                f"{record['seeds']} seeds: valid ΔNE {a['delta']:+.3f}% [{a['ci'][0]:+.3f}%, {a['ci'][1]:+.3f}%], "
                f"test ΔNE {a['delta_test']:+.3f}%. {technique.description}."
            )
        else:
            lines.append(f"- `{technique.id}` ({switch}) without an accepted qualification: {reason}")
    lines.append("Packages that pinned another value keep it (recorded as opted out).")
    lines.append(
        "Packages whose dense FLOPs/example cannot hold a new answer keep the old value (recorded as not applicable)."
    )
    return "\n".join(lines) + "\n\n"


def _insert_changelog(path: Path, text: str) -> None:
    old = path.read_text() if path.is_file() else "# Template changelog\n\n## Unreleased\n\n"
    marker = "## Unreleased\n"
    if marker in old:
        head, tail = old.split(marker, 1)
        new = head + marker + "\n" + text + tail.lstrip("\n")
    else:
        first = old.find("\n## ")
        new = old + "\n" + text if first < 0 else old[: first + 1] + text + old[first + 1 :]
    path.write_text(new)


def _adopt_message(ids: str, version: str) -> str:
    return f"adopt {ids} as template defaults ({version})"


def _preflight(repo: TemplateRepo, packages: list[Package], unreleased_adoption: str | None, resuming: bool) -> str:
    current = _git.latest_version_tag(repo.root)
    if not current:
        raise SmtError("the template has no release yet; cut one with `smt release v0.1.0` first")
    dirty = repo.dirty_files()
    if dirty:
        raise SmtError(
            f"the template has uncommitted changes ({', '.join(dirty[:3])}); commit or stash them first (a killed "
            "`smt adopt` leaves its edits uncommitted: `git checkout -- copier.yml template_repo`, then rerun)"
        )
    if repo.changed_since(repo.resolve(current)) and not unreleased_adoption:
        raise SmtError(f"the template changed since {current} without a release; release it first (`smt release`)")
    broken = [p.name for p in packages if p.problem]
    if broken:
        raise SmtError(f"unreadable packages {broken}; fix them (`smt status`) before adopting")
    for root in {p.git_root for p in packages} if not resuming else ():  # a killed run's own syncs are not committed
        rels = [p.git_relpath for p in packages if p.git_root == root]
        dirty = _git.dirty_paths(root, *rels)
        if dirty:
            raise SmtError(f"uncommitted changes in the fleet ({', '.join(dirty[:3])}); commit them before adopting")
    return current


def adopt(
    repo: TemplateRepo,
    techniques: list[Technique],
    override_reason: str | None = None,
    jobs: int | None = None,
    fleet_file: Path | None = None,
    on_status: Callable[[str], None] = lambda text: None,
    run_tests: bool = True,
) -> dict:
    """Make ``techniques`` template defaults, release, sync, record; the adoption record (also appended).
    ``run_tests=False`` skips each package's fast tests after its update (as ``smt sync --no-test``); the
    record says so (``package_tests``)."""
    if override_reason is not None and not override_reason.strip():  # recorded as the evidence: it must say why
        raise SmtError("--override-reason is blank; say why the technique is adopted without an accepted qualification")
    started = time.perf_counter()
    packages = discover(repo, None, fleet_file)
    ids = ", ".join(t.id for t in techniques)
    head_subject = _git.run(repo.root, "log", "-1", "--format=%s").strip()
    pending = next_version(repo) if head_subject == _adopt_message(ids, next_version(repo)) else None
    current = _preflight(repo, packages, pending, all(is_default(t, repo.root) for t in techniques))
    path = ledger_path(repo.root)
    ledger = read(path)
    if pending:  # a killed adopt committed the new defaults but did not tag them: release them now
        release(repo, pending)
        on_status(f"released {pending} (a killed adoption had committed it)")
        current = pending
    resumed = _released_by_adopt(repo, ids, current) and not any(
        r["to_version"] == current and {t.id for t in techniques} <= set(r["techniques"])
        for r in ledger.of_kind(ADOPTION)
    )
    if not resumed and all(is_default(t, repo.root) for t in techniques) and _unfinished(ledger, techniques):
        return _finish(repo, techniques, packages, ledger, current, jobs, fleet_file, on_status, started, run_tests)
    if resumed:  # a killed adopt: the release exists, the fleet and the ledger are not done
        on_status(f"resuming the adoption released as {current}")
        version = current
        records = [(t, ledger.last_qualification(t.id)) for t in techniques]
        from_version = _previous_release(repo, version)
        # the packages as committed (adopt commits the fleet last) against the defaults of the release before
        states = _states(repo, techniques, packages, from_version, package_ref="HEAD")
    else:
        already = [t.id for t in techniques if is_default(t, repo.root)]
        if already:
            raise SmtError(f"{', '.join(already)} is already a template default; nothing to adopt")
        records = [(t, evidence(ledger, t, current, override_reason)) for t in techniques]
        states = _states(repo, techniques, packages, current)
        version, from_version = next_version(repo), current
        _change_defaults(repo, techniques)
        _insert_changelog(repo.root / CHANGELOG, changelog_text(version, [(t, r, override_reason) for t, r in records]))
        _faults.point("adopt:edited")
        _git.run(repo.root, "add", "copier.yml", "template_repo")
        _git.run(repo.root, "commit", "-q", "-m", _adopt_message(ids, version))
        _faults.point("adopt:committed")
        release(repo, version)
        _faults.point("adopt:released")
        on_status(f"released {version} with {ids} as defaults")
    not_synced = _sync_groups(repo, techniques, packages, states, version, jobs, fleet_file, on_status, run_tests)
    record = new_record(
        ADOPTION,
        technique=techniques[0].id if len(techniques) == 1 else "+".join(t.id for t in techniques),
        techniques=[t.id for t in techniques],
        qualification=[r["id"] if r else None for _, r in records],
        from_version=from_version,
        to_version=version,
        packages=_merged_states(states),
        per_technique=states,
        override_reason=override_reason,
        resumed=resumed,
        package_tests=run_tests,
        not_synced=not_synced,
        machine_seconds=round(time.perf_counter() - started, 1),
    )
    append(path, record)
    _commit_fleet(repo, packages, fleet_file, f"sync the fleet to {version} (adopt {record['technique']}); ledger")
    return record


def _sync_groups(
    repo, techniques, packages, states, version: str, jobs, fleet_file, on_status, run_tests: bool = True
) -> dict[str, str]:
    """Sync ``packages`` to ``version``, one ``smt sync`` per distinct set of answer overrides; a package that
    did not reach ``version`` turns every one of its pairs in ``states`` to ``not synced`` (in place). Returns
    package → why it did not reach ``version`` (sync's one-line reason)."""
    overrides_of = sync_overrides(techniques, packages, states, smt_cache.capacities(repo.root))
    groups: dict[str, list[str]] = {}
    for p in packages:
        groups.setdefault(repr(sorted(overrides_of.get(p.name, {}).items())), []).append(p.name)
    reached, reasons = set(), {}
    for names in groups.values():
        overrides = overrides_of.get(names[0], {})
        on_status(f"sync {', '.join(names)} to {version}" + (f" with {overrides}" if overrides else ""))
        results = sync_fleet(
            repo, names, ref=version, jobs=jobs, overrides=overrides, fleet_file=fleet_file, run_tests=run_tests
        )
        reached |= {r.name for r in results if r.result in REACHED}
        reasons |= {r.name: f"{r.result}: {r.reason}" for r in results if r.result not in REACHED}
        _faults.point("adopt:synced-group")
    for t in techniques:
        for name in states[t.id]:
            if name not in reached:
                states[t.id][name] = NOT_SYNCED
    missed = sorted({p.name for p in packages} - reached)
    return {name: reasons.get(name, "did not reach the release") for name in missed}


def _released_by_adopt(repo: TemplateRepo, ids: str, version: str) -> bool:
    """Whether release ``version`` tags the commit of ``smt adopt IDS`` (a killed adoption's own release)."""
    subject = _git.run(repo.root, "log", "-1", "--format=%s", f"{version}^{{commit}}").strip()
    return subject == _adopt_message(ids, version)


def _unfinished(ledger: Ledger, techniques: list[Technique]) -> dict[str, list[str]]:
    """technique → the packages whose latest recorded pair state is ``not synced`` (only the non-empty)."""
    matrix = pair_matrix(ledger.records)
    todo = {t.id: sorted(n for n, c in matrix.get(t.id, {}).items() if c["state"] == NOT_SYNCED) for t in techniques}
    return {t: names for t, names in todo.items() if names}


def _finish(
    repo, techniques, packages, ledger, current: str, jobs, fleet_file, on_status, started, run_tests: bool = True
) -> dict:
    """Carry adopted techniques to the packages whose adoption sync was refused, at the latest release.

    Each such package is judged as at adoption time (against the defaults of the release before the
    adoption): one that still follows the old defaults is ``adopted`` (or ``not applicable``), one that pinned
    its own value meanwhile is ``opted out``. The new record ``completes`` the last adoption of the techniques.
    """
    todo = _unfinished(ledger, techniques)
    names = set().union(*todo.values())
    chosen = [p for p in packages if p.name in names]
    if not chosen:
        raise SmtError(
            f"the not-synced packages of {', '.join(todo)} ({', '.join(sorted(names))}) are no longer in the "
            "fleet; nothing to finish"
        )
    ids = {t.id for t in techniques}
    last = [r for r in ledger.of_kind(ADOPTION) if ids & set(r.get("techniques", [r["technique"]]))][-1]
    on_status(f"finishing {len(chosen)} not-synced package(s) of adoption {last['id']} at {current}")
    states = _states(repo, techniques, chosen, last["from_version"], sizing_ref=current)
    states = {t: {n: s for n, s in per.items() if n in todo.get(t, ())} for t, per in states.items()}
    not_synced = _sync_groups(repo, techniques, chosen, states, current, jobs, fleet_file, on_status, run_tests)
    states = {t: per for t, per in states.items() if per}
    record = new_record(
        ADOPTION,
        technique="+".join(states),
        techniques=list(states),
        qualification=last["qualification"],
        from_version=last["from_version"],
        to_version=current,
        packages=_merged_states(states),
        per_technique=states,
        override_reason=last.get("override_reason"),
        resumed=False,
        completes=last["id"],
        package_tests=run_tests,
        not_synced=not_synced,
        machine_seconds=round(time.perf_counter() - started, 1),
    )
    append(ledger_path(repo.root), record)
    _commit_fleet(
        repo,
        chosen,
        fleet_file,
        f"sync {', '.join(p.name for p in chosen)} to {current} " f"(finish adopting {record['technique']}); ledger",
    )
    return record


def _states(
    repo, techniques, packages, defaults_ref: str, package_ref: str | None = None, sizing_ref: str | None = None
) -> dict:
    """technique → package → pair state, judged against the template defaults at ``defaults_ref`` and the
    packages as they are (or as committed at ``package_ref``); the new answers are sized at ``sizing_ref``
    (default: ``defaults_ref``)."""
    with repo.snapshot(repo.resolve(defaults_ref)) as template, contextlib.ExitStack() as stack:
        before = [stack.enter_context(at_version(p, package_ref)) if package_ref else p for p in packages]
        states = {t.id: {b.name: pair_state(t, b, template) for b in before} for t in techniques}
        for t in techniques:
            for b in before:
                sized_at = sizing_ref or defaults_ref
                if states[t.id][b.name] == ADOPTED and t.answers and not_applicable(repo, t, b, sized_at):
                    states[t.id][b.name] = NOT_APPLICABLE
        return states


def not_applicable(repo: TemplateRepo, technique: Technique, package: Package, ref: str) -> str | None:
    """Why ``package`` cannot take ``technique``'s answers at its own dense FLOPs/example (the template's one
    line: the sizing is impossible or leaves layers too narrow to learn), or None when it can."""
    store = smt_cache.capacities(repo.root)
    budget = package.questions.get("flops_budget") or _dense_flops(package, store)
    try:
        with with_answers(repo, package, {**technique.answers, "flops_budget": budget}, repo.resolve(ref)) as cand:
            PackageCLI(cand.path, capacities=store).capacity()
    except SmtError as exc:
        return str(exc)
    return None


def _dense_flops(package: Package, capacities: Path | None = None) -> int:
    return int(round(PackageCLI(package.path, capacities=capacities).capacity().dense_flops_per_example))


def sync_overrides(
    techniques: list[Technique], packages: list[Package], states: dict, capacities: Path | None = None
) -> dict[str, dict]:
    """package → the answers its sync carries: an adopted answer with the package's current FLOPs as the
    budget (neutral capacity), or, where the answer is not applicable, the package's own old value (pinned).
    ``capacities``: see ``PackageCLI``."""
    overrides_of: dict[str, dict] = {}
    for t in techniques:
        for p in packages:
            if not t.answers or states[t.id][p.name] not in (ADOPTED, NOT_APPLICABLE):
                continue
            extra = overrides_of.setdefault(p.name, {})
            if states[t.id][p.name] == NOT_APPLICABLE:
                extra.update({key: p.questions.get(key) for key in t.answers})
                continue
            extra.update(t.answers)
            if not p.questions.get("flops_budget") and "flops_budget" not in extra:
                extra["flops_budget"] = _dense_flops(p, capacities)
    return overrides_of


def _previous_release(repo: TemplateRepo, version: str) -> str:
    tags = [t for t in _git.run(repo.root, "tag", "--list").split() if _git.RELEASE_TAG.match(t)]
    older = sorted((t for t in tags if Version(t) < Version(version)), key=Version)
    if not older:
        raise SmtError(f"no release before {version}: cannot tell which packages followed the old defaults")
    return older[-1]


def _merged_states(states: dict[str, dict[str, str]]) -> dict[str, str]:
    """One state per package over the adopted techniques: the least favourable (not synced > opted out > …)."""
    order = [ADOPTED, ALREADY_ON, OPTED_OUT, NOT_APPLICABLE, NOT_SYNCED]
    merged: dict[str, str] = {}
    for per_package in states.values():
        for name, state in per_package.items():
            merged[name] = max(merged.get(name, ADOPTED), state, key=order.index)
    return merged


def _change_defaults(repo: TemplateRepo, techniques: list[Technique]) -> None:
    config = config_path(repo.root)
    options = training_defaults(config)
    for t in techniques:
        for key, value in t.answers.items():
            set_answer_default(repo.root, key, value)
        for key, value in t.training.items():
            if options.get(key) != value:
                set_training_default(config, key, value)


def _commit_fleet(repo: TemplateRepo, packages: list[Package], fleet_file: Path | None, message: str) -> None:
    for root in git_roots(repo, fleet_file):
        rels = [p.git_relpath for p in packages if p.git_root == root]
        if root == repo.root:
            rels.append(ledger_path(repo.root).name)
            if releases_path(repo.root).exists():
                rels.append(RELEASES)
        if not rels:
            continue
        _git.run(root, "add", "-A", "--", *rels)
        if _git.run(root, "diff", "--cached", "--name-only").strip():
            _git.run(root, "commit", "-q", "-m", message)
