"""The README's main job, `smt demo`, runs the whole loop (here on a small budget)."""

from __future__ import annotations

from scaffold.cli import main


def test_demo_runs_the_whole_loop(tmp_path, capsys):
    from .helpers import REPO

    code = main(["--repo", str(REPO), "demo", "--seconds", "3", "--rows", "4000", "--workdir", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "test metrics per event" in out and "capacity:" in out and "export:" in out
    assert (tmp_path / "demo_ctr" / "runs" / "demo" / "model.pt2").is_file()
    assert (tmp_path / "demo_ctr" / "runs" / "demo" / "best.pt").is_file()
