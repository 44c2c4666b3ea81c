"""Faults: kill -9 at many points of a sync, edits after a crash, stale locks, two syncs at once, corrupt files.

Every case runs the real `smt` in a subprocess on a real fleet in a temp git repository, kills it with SIGKILL
at a named point (``SMT_FAULT``, scaffold/_faults.py), and then asserts that nothing the user had is lost and
that each package is exactly at the old or the new version once recovery ran, never between.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaffold import TemplateRepo, new_package
from scaffold.journal import DIRECTORY, JOURNAL
from scaffold.lock import fleet_lock

from .helpers import BIN, commit_all, git, make_template_repo, process_stat, tree_files

TEMPLATE_SRC = "template_repo/src/{{ name }}"
NAMES = ("ctr_a", "ctr_b")


def smt(root: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SMT_FAULT"}
    if fault:
        env["SMT_FAULT"] = fault
    return subprocess.run([str(BIN / "smt"), *args], cwd=root, capture_output=True, text=True, env=env)


def _v2(root: Path) -> None:
    """A template release that changes, adds and edits several files of every package."""
    src = root / TEMPLATE_SRC
    (src / "metrics.py").write_text((src / "metrics.py").read_text().replace("EPS = 1e-7\n", "EPS = 1e-6\n"))
    (src / "calibration.py").write_text('"""New in v2."""\n\nK = 1\n')
    (src / "config.py").write_text((src / "config.py").read_text().replace('"""Typed', '"""v2: typed', 1))
    commit_all(root, "template v2")
    git(root, "tag", "v2")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """(repo at the old version, a copy synced to the new one): references every case compares with."""
    base = tmp_path_factory.mktemp("faults")
    root = make_template_repo(base / "old")
    repo = TemplateRepo.find(root)
    for name in NAMES:
        new_package(repo, name)
    commit_all(root, "fleet")
    _v2(root)
    new = base / "new"
    shutil.copytree(root, new)
    done = smt(new, "sync", "--no-test")
    assert done.returncode == 0, done.stdout + done.stderr
    return root, new


def _package_trees(root: Path) -> dict[str, dict[str, bytes]]:
    return {name: tree_files(root / "generated" / name) for name in NAMES}


def _victim(fleet, tmp_path) -> Path:
    victim = tmp_path / "victim"
    shutil.copytree(fleet[0], victim)
    return victim


def _each_at_old_or_new(victim: Path, fleet) -> dict[str, str]:
    old, new = _package_trees(fleet[0]), _package_trees(fleet[1])
    states = {}
    for name, files in _package_trees(victim).items():
        states[name] = "old" if files == old[name] else "new" if files == new[name] else "between"
    return states


POINTS_ONE_JOB = ["sync:planned:1", "sync:journal", "sync:write:1", "sync:write:3", "sync:written", "sync:staged"]
CASES = [(p, 1) for p in POINTS_ONE_JOB] + [(p, 2) for p in ("sync:planned:1", "sync:write:2", "sync:staged")]


@pytest.mark.parametrize("point,jobs", CASES, ids=[f"{p}-jobs{j}" for p, j in CASES])
def test_kill_at_any_point_then_every_package_is_old_or_new(fleet, tmp_path, point, jobs):
    victim = _victim(fleet, tmp_path)
    killed = smt(victim, "sync", "--no-test", "--jobs", str(jobs), fault=point)
    assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
    open_journal = (victim / ".git" / DIRECTORY / JOURNAL).is_file()
    check = smt(victim, "check")
    if open_journal:
        assert check.returncode == 1 and "half-updated" in check.stdout, check.stdout
    recovered = smt(victim, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert "between" not in _each_at_old_or_new(victim, fleet).values(), point
    finished = smt(victim, "sync", "--no-test")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert set(_each_at_old_or_new(victim, fleet).values()) == {"new"}, point
    commit_all(victim, "fleet at v2")  # sync leaves the update staged; CI checks what is committed
    assert smt(victim, "check").returncode == 0


def test_the_next_sync_recovers_and_reaches_the_target_in_the_same_run(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    assert smt(victim, "sync", "ctr_a", "--no-test", fault="sync:write:2").returncode == -signal.SIGKILL
    again = smt(victim, "sync", "ctr_a", "--no-test")
    assert again.returncode == 0 and "updated" in again.stdout, again.stdout
    assert _each_at_old_or_new(victim, fleet)["ctr_a"] == "new"


def test_a_kill_during_recovery_is_recovered_by_the_next_run(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    assert smt(victim, "sync", "--no-test", fault="sync:write:3").returncode == -signal.SIGKILL
    assert smt(victim, "recover", fault="recover:restore:1").returncode == -signal.SIGKILL
    assert smt(victim, "recover").returncode == 0
    assert set(_each_at_old_or_new(victim, fleet).values()) == {"old"}


def test_dry_run_after_a_kill_touches_nothing_and_reports_it(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    assert smt(victim, "sync", "--no-test", fault="sync:write:2").returncode == -signal.SIGKILL
    before = tree_files(victim / "generated")
    dry = smt(victim, "sync", "--dry-run")
    assert dry.returncode == 1 and "half-updated" in dry.stdout, dry.stdout
    assert tree_files(victim / "generated") == before and (victim / ".git" / DIRECTORY / JOURNAL).is_file()


def test_edits_and_new_files_made_after_a_crash_are_never_touched(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    assert smt(victim, "sync", "--no-test", fault="sync:write:2").returncode == -signal.SIGKILL
    package = victim / "generated" / "ctr_a"
    features = package / "src" / "ctr_a" / "features.yaml"
    features.write_text(features.read_text() + "# my edit after the crash\n")
    (package / "NOTES.md").write_text("work I did after the crash\n")
    (package / "src" / "ctr_a" / "mine.py").write_text("MINE = 1\n")
    result = smt(victim, "sync", "--no-test")
    assert "my edit after the crash" in features.read_text()
    assert (package / "NOTES.md").read_text() == "work I did after the crash\n"
    assert (package / "src" / "ctr_a" / "mine.py").read_text() == "MINE = 1\n"
    assert result.returncode == 1 and "uncommitted changes" in result.stdout, result.stdout  # dirty: refused
    old = tree_files(fleet[0] / "generated" / "ctr_a")
    now = tree_files(package)
    assert {k: v for k, v in now.items() if k in old and k != "src/ctr_a/features.yaml"} == {
        k: v for k, v in old.items() if k != "src/ctr_a/features.yaml"
    }


def test_an_edit_of_a_file_the_killed_sync_wrote_blocks_recovery_until_forced(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    assert smt(victim, "sync", "--no-test", fault="sync:write:2").returncode == -signal.SIGKILL
    record = json.loads((victim / ".git" / DIRECTORY / JOURNAL).read_text())
    package = victim / record["package"]
    written = sorted(record["files"])[0]  # the first file written
    (package / written).write_text((package / written).read_text() + "\n# edited after the crash\n")
    before = tree_files(victim / "generated")
    for args in (("sync", "--no-test"), ("recover",)):
        refused = smt(victim, *args)
        assert refused.returncode == 2 and "recover --force" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert tree_files(victim / "generated") == before
    forced = smt(victim, "recover", "--force")
    assert forced.returncode == 0 and "kept in" in forced.stdout, forced.stdout
    kept = next((victim / ".git" / "smt-rescued").rglob(Path(written).name))
    assert kept.read_text().endswith("# edited after the crash\n")
    assert "between" not in _each_at_old_or_new(victim, fleet).values()


def test_workers_die_with_a_killed_parent(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    env = {**os.environ, "SMT_FAULT": "sync:planned:1"}
    proc = subprocess.Popen(
        [str(BIN / "smt"), "sync", "--no-test", "--jobs", "2"],
        cwd=victim,
        env=env,
        start_new_session=True,  # the workers share its process group: find them after the kill
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.wait(timeout=120) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(proc.pid) == []


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        fields = process_stat(int(proc.name))
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(proc.name))
    return members


def test_a_stale_index_lock_fails_cleanly_and_changes_nothing(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    assert smt(victim, "sync", "--no-test", fault="sync:write:2").returncode == -signal.SIGKILL
    (victim / ".git" / "index.lock").write_text("")  # a crashed git left it
    blocked = smt(victim, "sync", "--no-test")
    assert blocked.returncode == 1 and "index.lock" in blocked.stdout, blocked.stdout
    assert set(_each_at_old_or_new(victim, fleet).values()) == {"old"}  # rolled back, nothing new written
    assert not (victim / ".git" / DIRECTORY / JOURNAL).exists()
    (victim / ".git" / "index.lock").unlink()
    assert smt(victim, "sync", "--no-test").returncode == 0
    assert set(_each_at_old_or_new(victim, fleet).values()) == {"new"}


def test_a_second_command_is_refused_while_one_holds_the_fleet_lock(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    before = tree_files(victim / "generated")
    with fleet_lock(victim, "smt sync --set mlp_block=residual"):
        for args in (("sync", "--no-test"), ("release", "v3"), ("recover",), ("new", "ctr_c")):
            refused = smt(victim, *args)
            assert refused.returncode == 2, (args, refused.stderr)
            assert "another smt command" in refused.stderr and "mlp_block=residual" in refused.stderr
    assert tree_files(victim / "generated") == before


def test_a_stale_lock_file_from_a_killed_sync_does_not_block(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    assert smt(victim, "sync", "--no-test", fault="sync:journal").returncode == -signal.SIGKILL
    assert (victim / ".git" / "smt.lock").read_text()  # its holder line is still there; the flock is gone
    assert smt(victim, "sync", "--no-test").returncode == 0


def test_two_syncs_at_once_never_mix_versions(fleet, tmp_path):
    for attempt in range(3):
        victim = tmp_path / f"victim{attempt}"
        shutil.copytree(fleet[0], victim)
        commands = (["sync", "--no-test"], ["sync", "ctr_a", "--no-test", "--set", "mlp_block=residual"])
        procs = [
            subprocess.Popen([str(BIN / "smt"), *c], cwd=victim, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for c in commands
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        codes = [p.returncode for p in procs]
        for code, (_, err) in zip(codes, outs):
            assert code == 0 or (code == 2 and b"another smt command" in err), (code, err)
        status = json.loads(smt(victim, "status", "--json").stdout)  # each package = a render of its answers
        assert all(row["drift"] == [] and row["state"] != "unreadable" for row in status), status
        assert any(code == 0 for code in codes)
        answers = (victim / "generated/ctr_a/.copier-answers.yml").read_text()
        spec = (victim / "generated/ctr_a/src/ctr_a/spec.py").read_text()
        assert ("mlp_block: residual" in answers) == ('mlp_block="residual"' in spec)


def test_a_corrupt_answers_file_is_one_line_and_blocks_only_its_package(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    answers = victim / "generated/ctr_a/.copier-answers.yml"
    answers.write_text("_commit: v1\nname: [ctr_a\n")
    commit_all(victim, "corrupt answers")
    status = smt(victim, "status")
    assert status.returncode == 0 and "unreadable" in status.stdout and "git checkout" in status.stdout
    check = smt(victim, "check")
    assert check.returncode == 1 and "not readable YAML" in check.stdout
    synced = smt(victim, "sync", "--no-test")
    assert synced.returncode == 1 and "Traceback" not in synced.stderr
    assert answers.read_text() == "_commit: v1\nname: [ctr_a\n"
    assert _each_at_old_or_new(victim, fleet)["ctr_b"] == "new"


def test_a_corrupt_journal_is_reported_and_nothing_is_touched(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    journal_dir = victim / ".git" / DIRECTORY
    journal_dir.mkdir()
    (journal_dir / JOURNAL).write_text("{not json")
    before = tree_files(victim / "generated")
    synced = smt(victim, "sync", "--no-test")
    assert synced.returncode == 2 and "unreadable" in synced.stderr and "Traceback" not in synced.stderr
    check = smt(victim, "check")
    assert check.returncode == 1 and "unreadable" in check.stdout
    assert tree_files(victim / "generated") == before


def test_unknown_answer_keys_are_refused(fleet, tmp_path):
    victim = _victim(fleet, tmp_path)
    before = tree_files(victim / "generated")
    for args in (("sync", "--set", "nosuchkey=1"), ("new", "ctr_c", "--set", "nonexistent_key=3")):
        refused = smt(victim, *args)
        assert refused.returncode == 2 and "no such question" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    bad_yaml = smt(victim, "sync", "--set", "events=[a")
    assert bad_yaml.returncode == 2 and "not valid YAML" in bad_yaml.stderr
    assert tree_files(victim / "generated") == before and not (victim / "generated" / "ctr_c").exists()


def test_export_killed_mid_write_never_destroys_the_previous_artifact(tmp_path):
    """A real package: train, export, then re-export and SIGKILL it the moment it starts writing."""
    from scaffold.status import render_answers

    from .helpers import copy_template

    package = render_answers(copy_template(tmp_path / "template"), {"name": "pkg_export"}, tmp_path / "pkg_export")
    cli = [sys.executable, "-m", "pkg_export"]
    env = {**os.environ, "PYTHONPATH": str(package / "src"), "OMP_NUM_THREADS": "1"}

    def run(*args):
        done = subprocess.run([*cli, *args], cwd=package, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]

    run("synth", "--rows", "2000", "--out", "train.parquet", "--seed", "1")
    run("synth", "--rows", "600", "--out", "valid.parquet", "--seed", "2")
    run("train", "--train", "train.parquet", "--valid", "valid.parquet", "--out", "run", "epochs=1", "--quiet")
    artifact = package / "model.pt2"
    run("export", "--checkpoint", "run", "--out", str(artifact), "--batches", "1", "--repeats", "1")
    good, mtime = artifact.read_bytes(), artifact.stat().st_mtime_ns
    export = [*cli, "export", "--checkpoint", "run", "--out", str(artifact), "--batches", "1", "--repeats", "1"]
    proc = subprocess.Popen(export, cwd=package, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        writing = list(package.glob(".model.*.tmp.pt2")) or artifact.stat().st_mtime_ns != mtime
        if writing:
            proc.kill()
            break
        time.sleep(0.001)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the export finished before it could be killed mid-write"
    assert artifact.read_bytes() == good  # the previous artifact, whole
    check = [sys.executable, "-c", f"import torch; torch.export.load({str(artifact)!r})"]
    assert subprocess.run(check, env=env, capture_output=True).returncode == 0


def test_the_scratch_folders_of_a_killed_sync_are_swept_by_the_next_command(fleet, tmp_path):
    victim, scratch = _victim(fleet, tmp_path), tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SMT_FAULT"} | {"TMPDIR": str(scratch)}
    command = [str(BIN / "smt"), "sync", "--no-test", "--jobs", "1"]
    killed = subprocess.run(command, cwd=victim, env={**env, "SMT_FAULT": "sync:planned:1"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    left = sorted(p.name.rsplit("-", 1)[0] for p in scratch.iterdir())
    assert "smt-template" in left, left  # the snapshots the kill kept from being removed
    status = subprocess.run([str(BIN / "smt"), "status"], cwd=victim, env=env, capture_output=True, text=True)
    assert status.returncode in (0, 1), status.stderr
    assert list(scratch.iterdir()) == []
