"""Adoption: accepted techniques become template defaults, released and carried to every package (DESIGN §4).

One call does what a person would otherwise do by hand, in this order:
1. check: every technique has an accepted qualification at the current template version (or an override
   reason is given, and recorded); the template has no unreleased change; the fleet is clean and current;
2. per package, decide its pair state *before* the defaults move: ``already on``; ``opted out`` when the
   package pinned another value (an answer that differs from the old default, or the option in its own
   ``train.yaml``); else it follows the defaults and is ``adopted``;
3. rewrite the defaults (``copier.yml`` answers, ``TrainConfig`` options), write the CHANGELOG entry with the
   evidence, commit, tag the release;
4. sync the fleet: followers of a changed answer get it (with their current dense FLOPs/example as the
   budget, so adoption stays at neutral serving capacity); everyone gets the new template;
5. record every (technique, package) pair in the ledger and commit the fleet and the ledger together.

A run killed after the release is finished by running the same command again (the technique is then the
default at the current version with no adoption record: steps 4–5 run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from packaging.version import Version

from . import _git
from .defaults import answer_default, config_path, set_answer_default, set_training_default, training_defaults
from .errors import SmtError
from .fleet import Package, discover, git_roots
from .ledger import ADOPTION, Ledger, append, ledger_path, new_record, read
from .package_cli import PackageCLI
from .sync import REACHED, sync_fleet
from .techniques import Technique, is_default, is_on, pinned_training
from .template import TemplateRepo
from .versions import CHANGELOG, release

ADOPTED, OPTED_OUT, ALREADY_ON, NOT_SYNCED = "adopted", "opted out", "already on", "not synced"


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
    if last and last["decision"] == "accept" and last["template_version"] == version:
        return last
    if reason:
        return None
    if not last:
        why = "it was never qualified"
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


def _preflight(repo: TemplateRepo, packages: list[Package]) -> str:
    current = _git.latest_version_tag(repo.root)
    if not current:
        raise SmtError("the template has no release yet; cut one with `smt release v0.1.0` first")
    dirty = repo.dirty_files()
    if dirty:
        raise SmtError(f"the template has uncommitted changes ({', '.join(dirty[:3])}); commit or stash them first")
    if repo.changed_since(repo.resolve(current)):
        raise SmtError(f"the template changed since {current} without a release; release it first (`smt release`)")
    broken = [p.name for p in packages if p.problem]
    if broken:
        raise SmtError(f"unreadable packages {broken}; fix them (`smt status`) before adopting")
    for root in {p.git_root for p in packages}:
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
) -> dict:
    """Make ``techniques`` template defaults, release, sync, record; the adoption record (also appended)."""
    started = time.perf_counter()
    packages = discover(repo, None, fleet_file)
    current = _preflight(repo, packages)
    path = ledger_path(repo.root)
    ledger = read(path)
    resumed = all(is_default(t, repo.root) for t in techniques) and not any(
        r["to_version"] == current and {t.id for t in techniques} <= set(r["techniques"])
        for r in ledger.of_kind(ADOPTION)
    )
    if resumed:  # a killed adopt: the release exists, the fleet and the ledger are not done
        on_status(f"resuming the adoption released as {current}")
        version, from_version = current, None
        records = [(t, ledger.last_qualification(t.id)) for t in techniques]
        states = {
            t.id: {p.name: (ALREADY_ON if p.version == version and is_on(t, p) else ADOPTED) for p in packages}
            for t in techniques
        }
    else:
        already = [t.id for t in techniques if is_default(t, repo.root)]
        if already:
            raise SmtError(f"{', '.join(already)} is already a template default; nothing to adopt")
        records = [(t, evidence(ledger, t, current, override_reason)) for t in techniques]
        states = {t.id: {p.name: pair_state(t, p, repo.root) for p in packages} for t in techniques}
        version, from_version = next_version(repo), current
        _change_defaults(repo, techniques)
        _insert_changelog(repo.root / CHANGELOG, changelog_text(version, [(t, r, override_reason) for t, r in records]))
        _git.run(repo.root, "add", "copier.yml", "template_repo")
        ids = ", ".join(t.id for t in techniques)
        _git.run(repo.root, "commit", "-q", "-m", f"adopt {ids} as template defaults ({version})")
        release(repo, version)
        on_status(f"released {version} with {ids} as defaults")
    # answers to carry to the followers: the adopted value, and their current FLOPs as the budget
    overrides_of: dict[str, dict] = {}
    for t in techniques:
        for p in packages:
            if states[t.id][p.name] == ADOPTED and t.answers:
                extra = overrides_of.setdefault(p.name, {})
                extra.update(t.answers)
                if not p.questions.get("flops_budget") and "flops_budget" not in extra:
                    extra["flops_budget"] = int(round(PackageCLI(p.path).capacity().dense_flops_per_example))
    groups: dict[str, list[str]] = {}
    for p in packages:
        groups.setdefault(repr(sorted(overrides_of.get(p.name, {}).items())), []).append(p.name)
    reached = set()
    for names in groups.values():
        overrides = overrides_of.get(names[0], {})
        on_status(f"sync {', '.join(names)} to {version}" + (f" with {overrides}" if overrides else ""))
        results = sync_fleet(repo, names, ref=version, jobs=jobs, overrides=overrides, fleet_file=fleet_file)
        reached |= {r.name for r in results if r.result in REACHED}
    for t in techniques:
        for name in states[t.id]:
            if name not in reached:
                states[t.id][name] = NOT_SYNCED
    record = new_record(
        ADOPTION,
        technique=techniques[0].id if len(techniques) == 1 else "+".join(t.id for t in techniques),
        techniques=[t.id for t in techniques],
        qualification=[r["id"] if r else None for _, r in records],
        from_version=from_version or (records[0][1] or {}).get("template_version"),
        to_version=version,
        packages=_merged_states(states),
        per_technique=states,
        override_reason=override_reason,
        resumed=resumed,
        machine_seconds=round(time.perf_counter() - started, 1),
    )
    append(path, record)
    _commit_fleet(repo, packages, fleet_file, f"sync the fleet to {version} (adopt {record['technique']}); ledger")
    return record


def _merged_states(states: dict[str, dict[str, str]]) -> dict[str, str]:
    """One state per package over the adopted techniques: the least favourable (not synced > opted out > …)."""
    order = [ADOPTED, ALREADY_ON, OPTED_OUT, NOT_SYNCED]
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
        if not rels:
            continue
        _git.run(root, "add", "-A", "--", *rels)
        if _git.run(root, "diff", "--cached", "--name-only").strip():
            _git.run(root, "commit", "-q", "-m", message)
