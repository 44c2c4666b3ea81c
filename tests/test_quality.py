"""`smt bench quality`: variants split into answers and training options; re-rendered variants keep model files."""

from __future__ import annotations

import pytest

from scaffold import SmtError, TemplateRepo, new_package
from scaffold.cli import main
from scaffold.quality import parse_variant, relative_ne_change, template_questions, with_answers

from .helpers import commit_all


def test_variant_keys_split_into_answers_and_training_options(template_repo):
    questions = template_questions(TemplateRepo.find(template_repo))
    variant = parse_variant("wide:mlp_block=residual,width_multiplier=2,lr=0.001,flops_budget=match", questions)
    assert variant.answers == {"mlp_block": "residual", "width_multiplier": 2, "flops_budget": "match"}
    assert variant.training == ("lr=0.001",)
    with pytest.raises(SmtError, match="key=value"):
        parse_variant("bad:lr", questions)
    assert relative_ne_change(0.99, 1.0) == pytest.approx(-1.0)


def test_answer_variant_rerenders_and_keeps_model_owned_files(template_repo):
    repo = TemplateRepo.find(template_repo)
    package = new_package(repo, "ctr_a")
    features = package.path / "src" / "ctr_a" / "features.yaml"
    features.write_text(features.read_text() + "# mine\n")
    commit_all(template_repo, "fleet")
    from scaffold.fleet import load_package

    with with_answers(repo, load_package(package.path), {"mlp_block": "residual"}) as variant:
        assert variant.path != package.path and variant.answers["mlp_block"] == "residual"
        assert 'mlp_block="residual"' in (variant.path / "src" / "ctr_a" / "spec.py").read_text()
        assert (variant.path / "src" / "ctr_a" / "features.yaml").read_text().endswith("# mine\n")
    assert 'mlp_block="plain"' in (package.path / "src" / "ctr_a" / "spec.py").read_text()


def test_bench_quality_end_to_end_on_synthetic_task_files(template_repo, tmp_path, capsys):
    repo = TemplateRepo.find(template_repo)
    package = new_package(repo, "ctr_a").path
    commit_all(template_repo, "fleet")
    data = tmp_path / "data" / "ctr_a"
    from scaffold import runner

    for split, rows, seed in (("train", 1500, 1), ("valid", 500, 2), ("test", 500, 3)):
        assert (
            runner.run_cli(
                package, "synth", "--rows", str(rows), "--out", str(data / f"{split}.parquet"), "--seed", str(seed)
            ).returncode
            == 0
        )
    code = main(
        [
            "--repo",
            str(template_repo),
            "bench",
            "quality",
            "ctr_a",
            "--data",
            str(tmp_path / "data"),
            "--seeds",
            "1",
            "--variant",
            "res:mlp_block=residual,flops_budget=match,epochs=1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ctr_a" in out and "res" in out and "fleet-average relative NE change" in out
