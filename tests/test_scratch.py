"""Scratch folders: removed on exit, swept once their owner is killed, never swept while their owner lives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from scaffold.scratch import GRACE_SECONDS, NEW_OWNER, OWNER, scratch_dir, sweep

REPO = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent("""
    import sys, time
    from scaffold.scratch import scratch_dir
    with scratch_dir("held") as path:
        (path / "work.txt").write_text("rendering")
        print(path, flush=True)
        time.sleep(600)
    """)


def _holder(tmp: Path, **env) -> tuple[subprocess.Popen, Path]:
    """A process that made a scratch folder under ``tmp`` and sits in it."""
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO), **env}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_a_scratch_folder_is_removed_on_exit_and_on_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with scratch_dir("ok") as path:
        assert path.parent == tmp_path and path.name.startswith("smt-ok-") and (path / OWNER).is_file()
    try:
        with scratch_dir("failing") as path:
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_the_folder_of_a_killed_owner_is_swept_and_a_live_owners_is_not(tmp_path):
    killed, dead_folder = _holder(tmp_path)
    alive, live_folder = _holder(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert (dead_folder / "work.txt").is_file()  # the kill skipped the cleanup
        stranger = tmp_path / "smt-made-by-someone-else"  # no owner file: being created, or not ours
        stranger.mkdir()
        assert sweep(tmp_path) == [dead_folder]
        assert not dead_folder.exists()
        assert (live_folder / "work.txt").read_text() == "rendering"
        assert stranger.is_dir()
    finally:
        alive.kill()
        alive.wait(timeout=30)
    assert sweep(tmp_path) == [live_folder]


def test_a_sweep_of_a_missing_or_unreadable_parent_does_nothing(tmp_path):
    assert sweep(tmp_path / "missing") == []
    (tmp_path / "smt-file-not-folder").write_text("x")
    assert sweep(tmp_path) == []


def test_a_folder_whose_maker_was_killed_before_its_lock_was_in_place_is_swept_once_stale(tmp_path):
    """Killed between creating ``.owner.new`` and renaming it to ``.owner``: the folder holds that file alone.
    A sweep leaves it while it is fresh (a live maker renames it at once) and removes it once it is stale; an
    old ``.owner.new`` beside anything else is not this case and stays."""
    killed, _ = _holder(tmp_path, SMT_FAULT="scratch:owner-created")
    assert killed.wait(timeout=30) == -signal.SIGKILL
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("smt-held-") and [p.name for p in folder.iterdir()] == [NEW_OWNER]
    assert sweep(tmp_path) == [] and folder.is_dir()
    other = tmp_path / "smt-other-x"
    other.mkdir()
    (other / NEW_OWNER).write_text("")
    (other / "data.txt").write_text("not ours to judge")
    stale = time.time() - GRACE_SECONDS - 5
    for file in (folder / NEW_OWNER, other / NEW_OWNER):
        os.utime(file, (stale, stale))
    assert sweep(tmp_path) == [folder]
    assert not folder.exists() and (other / "data.txt").is_file()


def test_a_folder_whose_maker_was_killed_before_its_lock_file_existed_is_swept_once_stale(tmp_path):
    """Killed between making the folder and creating ``.owner.new``: the folder is empty. A sweep leaves it
    while it is fresh, removes it once stale, and leaves an old empty ``smt-*`` folder that scratch_dir did not
    name (another tool's) and an old one that is not empty."""
    killed, _ = _holder(tmp_path, SMT_FAULT="scratch:folder-made")
    assert killed.wait(timeout=30) == -signal.SIGKILL
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("smt-held-") and list(folder.iterdir()) == []
    assert sweep(tmp_path) == [] and folder.is_dir()
    foreign, busy = tmp_path / "smt-made-by-another-tool", tmp_path / "smt-held-abcd1234"
    foreign.mkdir()
    busy.mkdir()
    (busy / "data.txt").write_text("not ours to judge")
    stale = time.time() - GRACE_SECONDS - 5
    for path in (folder, foreign, busy):
        os.utime(path, (stale, stale))
    assert sweep(tmp_path) == [folder]
    assert not folder.exists() and foreign.is_dir() and (busy / "data.txt").is_file()


def test_a_maker_whose_empty_folder_was_swept_under_it_makes_another(tmp_path, monkeypatch):
    """A maker stalled past GRACE_SECONDS between mkdtemp and its lock file loses its folder to a sweep; it
    then makes a new one instead of failing."""
    import tempfile

    from scaffold import scratch

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    made, real_mkdtemp = [], tempfile.mkdtemp

    def mkdtemp_then_swept(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        made.append(path)
        if len(made) == 1:  # the first folder looks stale and is swept before the maker writes its lock file
            stale = time.time() - GRACE_SECONDS - 5
            os.utime(path, (stale, stale))
            assert sweep(tmp_path) == [Path(path)]
        return path

    monkeypatch.setattr(scratch.tempfile, "mkdtemp", mkdtemp_then_swept)
    with scratch_dir("slow") as path:
        assert str(path) == made[1] and (path / OWNER).is_file()
    assert list(tmp_path.iterdir()) == []
