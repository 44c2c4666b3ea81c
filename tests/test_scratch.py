"""Scratch folders: removed on exit, swept once their owner is killed, never swept while their owner lives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from scaffold.scratch import OWNER, scratch_dir, sweep

REPO = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent("""
    import sys, time
    from scaffold.scratch import scratch_dir
    with scratch_dir("held") as path:
        (path / "work.txt").write_text("rendering")
        print(path, flush=True)
        time.sleep(600)
    """)


def _holder(tmp: Path) -> tuple[subprocess.Popen, Path]:
    """A process that made a scratch folder under ``tmp`` and sits in it."""
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
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
