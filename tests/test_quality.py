"""`smt bench quality`: variants split into answers and training options; re-rendered variants keep model files."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from scaffold import SmtError, TemplateRepo, new_package
from scaffold.cli import main
from scaffold.quality import parse_grid, parse_variant, relative_ne_change, template_questions, with_answers

from .helpers import commit_all


def test_variant_keys_split_into_answers_and_training_options(template_repo):
    questions = template_questions(TemplateRepo.find(template_repo))
    variant = parse_variant("wide:mlp_block=residual,width_multiplier=2,lr=0.001,flops_budget=match", questions)
    assert variant.answers == {"mlp_block": "residual", "width_multiplier": 2, "flops_budget": "match"}
    assert variant.training == ("lr=0.001",)
    with pytest.raises(SmtError, match="key=value"):
        parse_variant("bad:lr", questions)
    for spec in ("bad", "bad:", ":lr=0.1", "default:lr=0.1"):  # no name, no overrides, or the baseline's name
        with pytest.raises(SmtError, match="must look like NAME:key=value"):
            parse_variant(spec, questions)
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
        # the package's own template source, not the temporary copy: a variant's content is the same each time
        assert variant.answers["_src_path"] == load_package(package.path).answers["_src_path"]
    assert 'mlp_block="plain"' in (package.path / "src" / "ctr_a" / "spec.py").read_text()


@pytest.mark.slow
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


def _synthetic_task(package, data):
    from scaffold import runner

    for split, rows, seed in (("train", 1500, 1), ("valid", 500, 2), ("test", 500, 3)):
        out = data / f"{split}.parquet"
        assert (
            runner.run_cli(package, "synth", "--rows", str(rows), "--out", str(out), "--seed", str(seed)).returncode
            == 0
        )


def test_peers_read_the_task_by_the_package_schema(template_repo, tmp_path):
    from scaffold.peers.common import metrics, read_task

    repo = TemplateRepo.find(template_repo)
    package = new_package(repo, "ctr_a").path
    _synthetic_task(package, tmp_path)
    task = read_task(tmp_path, package / "src" / "ctr_a" / "features.yaml")
    train = pq.read_table(tmp_path / "train.parquet")
    for name, ids in task.train.sparse.items():
        assert ids.min() >= 1 and ids.max() < task.vocab_sizes[name]  # every train value, missing too, has an id
        assert task.test.sparse[name].max() < task.vocab_sizes[name]
        missing = pc.is_null(train[name]).to_numpy(zero_copy_only=False)
        if missing.any():  # a missing value is one id of its own
            assert len(set(ids[missing])) == 1 and ids[missing][0] not in set(ids[~missing])
    for name, values in task.train.dense.items():
        assert abs(values.mean()) < 1e-6 and abs(values.std() - 1.0) < 1e-6  # standardized on train
        raw = train[name].to_numpy(zero_copy_only=False).astype(float)
        np.testing.assert_array_equal(np.isnan(task.train.dense_raw[name]), np.isnan(raw))  # NaN kept for trees
    for name, padded in task.train.multi_hot.items():
        assert padded.shape[1] == task.max_lengths[name] and (padded[:, 0] > 0).any()
    from sklearn.metrics import log_loss

    labels, probs = np.array([0, 1, 1, 0, 1.0]), np.array([0.2, 0.7, 0.9, 0.4, 0.8])
    m = metrics(labels, probs, train_rate=0.3)
    assert m["logloss"] == pytest.approx(log_loss(labels, probs)) and m["calibration"] == pytest.approx(1.0)
    assert m["ne_train"] == pytest.approx(m["logloss"] / -(0.3 * np.log(0.3) + 0.7 * np.log(0.7)))


def test_previous_version_is_the_package_as_committed_at_a_ref(template_repo):
    from scaffold.fleet import load_package
    from scaffold.quality import at_version

    repo = TemplateRepo.find(template_repo)
    package = new_package(repo, "ctr_a")
    commit_all(template_repo, "fleet")
    features = package.path / "src" / "ctr_a" / "features.yaml"
    before = features.read_text()
    features.write_text(before + "# later\n")
    commit_all(template_repo, "later")
    with at_version(load_package(package.path), "HEAD~1") as old:
        assert old.path != package.path and (old.path / "src" / "ctr_a" / "features.yaml").read_text() == before
    with pytest.raises(SmtError, match="unknown git ref"):
        with at_version(load_package(package.path), "no-such-ref"):
            pass


@pytest.mark.slow
def test_bench_quality_with_previous_version_baseline_lightgbm_and_plot(template_repo, tmp_path, capsys):
    repo = TemplateRepo.find(template_repo)
    package = new_package(repo, "ctr_a").path
    commit_all(template_repo, "fleet")
    _synthetic_task(package, tmp_path / "data" / "ctr_a")
    args = ["--repo", str(template_repo), "bench", "quality", "ctr_a", "--data", str(tmp_path / "data"), "--seeds", "1"]
    args += ["--previous", "HEAD", "--baseline", "--baseline-shapes", "32x32", "--baseline-lrs", "2e-3"]
    args += ["--peers", "LightGBM", "--plot", str(tmp_path / "ne.png")]
    code = main([*args, "--out", str(tmp_path / "runs.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "previous (HEAD)" in out and "baseline DNN" in out and "peer LightGBM" in out
    assert "template default vs tuned per-model baselines" in out
    assert (tmp_path / "ne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    runs = json.loads((tmp_path / "runs.json").read_text())
    baseline = next(r for group in runs for r in group if r["variant"].startswith("baseline"))
    default = next(r for group in runs for r in group if r["variant"] == "default")
    assert (
        abs(baseline["capacity"]["dense_flops_per_example"] / default["capacity"]["dense_flops_per_example"] - 1) < 0.02
    )
    with pytest.raises(SmtError, match="baseline grid"):
        parse_grid("256xwide", "1e-3")


def test_quality_report_compares_the_template_with_the_best_deep_peer_and_lightgbm(tmp_path):
    from benchmarks.quality_report import main

    def run(variant, seed, ne_train):
        metrics = {"ne": ne_train * 1.1, "ne_train": ne_train, "calibration": 1.0}
        return {"package": "task_a", "variant": variant, "seed": seed, "test": {"label": metrics}}

    groups = [
        [run("default", s, 0.50 + s / 100) for s in range(3)],
        [run("peer DeepCTR-Torch DeepFM", s, 0.60) for s in range(3)],
        [run("peer DeepCTR-Torch DCN", s, 0.55) for s in range(3)],
        [run("peer LightGBM", s, 0.505) for s in range(3)],
    ]
    results = tmp_path / "q.json"
    results.write_text(json.dumps(groups))
    main([str(results), "--command", "smt bench quality --seeds 3"])
    text = results.with_suffix(".md").read_text()
    assert "Reproduce: `smt bench quality --seeds 3`" in text
    assert "| task_a | default | 0.5100 ± 0.0100 | 0.5610 | 1.000 | 3 |" in text
    assert "| task_a | DeepCTR-Torch DCN | wins (-7.27%) | loses (+0.99%, within seed noise) |" in text
    assert "beat the best deep peer on 1 of 1 tasks, LightGBM on 0." in text
    assert "per-model baseline" not in text  # no baseline rows, no baseline table


def test_quality_report_compares_the_template_with_the_tuned_per_model_baseline(tmp_path):
    from benchmarks.quality_report import main

    def run(package, variant, seed, ne_train):
        metrics = {"ne": ne_train, "ne_train": ne_train, "calibration": 1.0}
        return {"package": package, "variant": variant, "seed": seed, "test": {"label": metrics}}

    groups = [
        [run("task_a", "default", s, 0.50) for s in range(2)],
        [run("task_a", "baseline DNN [512] lr=0.002", s, 0.52) for s in range(2)],
        [run("task_b", "default", s, 0.80 + s / 100) for s in range(2)],
        [run("task_b", "baseline DNN [256, 128] lr=0.001", s, 0.80) for s in range(2)],
    ]
    results = tmp_path / "q.json"
    results.write_text(json.dumps(groups))
    main([str(results)])
    text = results.with_suffix(".md").read_text()
    assert "| task_a | [512] lr=0.002 | wins (-3.85%) |" in text
    assert "| task_b | [256, 128] lr=0.001 | loses (+0.63%, within seed noise) |" in text
    assert "tuned per-model baseline: **-1.61%** (mean over 2 tasks" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--peers", "DCN,Nope"], r"unknown peer\(s\) \['Nope'\]"),
        (["--variant", "wide"], "must look like NAME:key=value"),
        (["--out", "FILE/runs.json"], "taken is a file, not a folder"),
        (["--plot", "DIR"], "is a folder; give a file name"),
        ([], "no package has task data under"),  # an empty table and exit 0 before
    ],
)
def test_bench_quality_refuses_bad_arguments_before_it_trains(template_repo, tmp_path, capsys, taken, args, message):
    args = [a.replace("FILE", str(taken)).replace("DIR", str(tmp_path)) for a in args]
    assert main(["--repo", str(template_repo), "bench", "quality", "--data", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and "\n" not in err and taken.read_text() == "mine\n"
