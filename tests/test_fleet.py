"""The committed fleet in generated/: in sync with the template, schemas of the real tasks, own tests green."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from scaffold import runner
from scaffold.datasets import tasks as T
from scaffold.fleet import load_package
from scaffold.status import compare_to_render, render_answers
from scaffold.template import model_owned_patterns

from .helpers import REPO, copy_template, run_package_tests

FLEET = REPO / "generated"
PACKAGES = sorted(p.name for p in FLEET.iterdir() if (p / ".copier-answers.yml").is_file())
CRITEO_SAMPLE = REPO.parent / "shared" / "data" / "criteo" / "criteo_sample.txt"

MOVIELENS = {
    "sparse": ["user_id", "movie_id", "gender", "occupation", "zip3", "age_bucket", "first_genre", "release_year"],
    "multi_hot": ["genres"],
    "dense": [],
}
FLIGHTS = {"sparse": T.FLIGHTS_SPARSE, "multi_hot": [], "dense": T.FLIGHTS_DENSE}
# The task columns of DESIGN §5, which each package's features.yaml must declare exactly.
TASKS = {
    "movielens_like": {"labels": ["label"], **MOVIELENS},
    "movielens_multi": {"labels": ["label", "love"], **MOVIELENS},
    "adult_income": {
        "labels": ["label"],
        "sparse": [
            "workclass",
            "education",
            "marital-status",
            "occupation",
            "relationship",
            "race",
            "gender",
            "native-country",
        ],
        "multi_hot": [],
        "dense": ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"],
    },
    "bio_rare": {"labels": ["label"], "sparse": [], "multi_hot": [], "dense": [f"f{i}" for i in range(4, 78)]},
    "flights_delay": {"labels": ["delayed"], **FLIGHTS},
    "flights_multi": {"labels": ["delayed", "cancelled"], **FLIGHTS},
    "bank_conversion": {"labels": ["label"], "sparse": T.BANK_SPARSE, "multi_hot": [], "dense": T.BANK_DENSE},
    "credit_default": {
        "labels": ["label"],
        "sparse": [],
        "multi_hot": [],
        "dense": [
            "RevolvingUtilizationOfUnsecuredLines",
            "age",
            "NumberOfTime30-59DaysPastDueNotWorse",
            "DebtRatio",
            "MonthlyIncome",
            "NumberOfOpenCreditLinesAndLoans",
            "NumberOfTimes90DaysLate",
            "NumberRealEstateLoansOrLines",
            "NumberOfTime60-89DaysPastDueNotWorse",
            "NumberOfDependents",
        ],
    },
    "employment": {"labels": ["label"], "sparse": T.EMPLOYMENT_SPARSE, "multi_hot": [], "dense": ["AGEP"]},
    "clothing_recommend": {
        "labels": ["label"],
        "sparse": ["clothing_id", "division", "department", "class_name"],
        "multi_hot": ["words"],
        "dense": ["age", "positive_feedback"],
    },
    "criteo_ctr": {
        "labels": ["label"],
        "sparse": [f"C{i}" for i in range(1, 27)],
        "multi_hot": [],
        "dense": [f"I{i}" for i in range(1, 14)],
    },
}


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory):
    return copy_template(tmp_path_factory.mktemp("template"))


def test_fleet_is_the_ten_real_task_packages_and_criteo():
    assert PACKAGES == sorted(TASKS)
    real = [name for name in PACKAGES if name != "criteo_ctr"]
    assert len(real) == 10 and {T.ALIASES.get(n, n) for n in real} == set(T.TASKS)
    interactions = {load_package(FLEET / name).answers["interaction"] for name in PACKAGES}
    assert interactions == {"concat", "dot", "dcn_v2"}


@pytest.mark.parametrize("name", PACKAGES)
def test_template_owned_files_equal_a_fresh_render(name, template_dir, tmp_path):
    package = load_package(FLEET / name)
    rendered = render_answers(template_dir, package.answers, tmp_path / name)
    drift = compare_to_render(package.path, rendered, model_owned_patterns(template_dir, package.answers))
    assert drift == [], f"{name} is out of sync with the template (render it again through smt): {drift}"


@pytest.mark.parametrize("name", PACKAGES)
def test_features_declare_the_task_columns(name):
    schema = yaml.safe_load((FLEET / name / "src" / name / "features.yaml").read_text())
    declared = {
        "labels": schema["labels"],
        **{kind: [f["name"] for f in schema.get(kind) or []] for kind in ("sparse", "multi_hot", "dense")},
    }
    assert declared == TASKS[name]


# What differs per package is tested per package: its model-owned tests (test_local.py) and the end-to-end
# run through its own CLI on its own features.yaml and answers (test_cli.py). What every package shares is
# tested once, by the variant matrix (test_variants.py), and template-owned files equal a fresh render (above).
PER_PACKAGE = ("tests/test_local.py", "tests/test_cli.py")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_passes_its_own_model_specific_tests(name):
    result = run_package_tests(FLEET / name, *PER_PACKAGE, "-m", "not slow")
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout


@pytest.mark.skipif(not CRITEO_SAMPLE.is_file(), reason="shared/data/criteo is not beside this checkout")
def test_criteo_package_trains_on_real_criteo_rows(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--train", str(CRITEO_SAMPLE), "--valid", str(CRITEO_SAMPLE), "--out", str(run), "--quiet"]
    proc = runner.run_cli(FLEET / "criteo_ctr", *args, "epochs=2", "batch_size=64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "best.pt").is_file()


def test_package_cli_takes_paths_relative_to_the_callers_directory(tmp_path, monkeypatch):
    """The package's process runs in the package's directory; a relative package path, data path or output path
    given by the caller still means the caller's (``smt bench speed --work build/x`` failed on this)."""
    from scaffold.package_cli import PackageCLI

    monkeypatch.chdir(tmp_path)
    name = PACKAGES[0]
    package = Path(os.path.relpath(FLEET / name, tmp_path))
    cli = PackageCLI(package, features=Path(os.path.relpath(FLEET / name / "src" / name / "features.yaml")))
    train, valid = cli.synth(Path("train.parquet"), rows=300), cli.synth(Path("valid.parquet"), rows=100, seed=1)
    result = cli.train(train, valid, Path("run"), ["epochs=1", "batch_size=64"])
    assert result.steps > 0 and (tmp_path / "run" / "best.pt").is_file()
    assert cli.capacity(Path("run")).dense_flops_per_example > 0


def test_train_reports_what_evaluate_and_capacity_say_of_the_same_run(tmp_path):
    """Qualification and the quality benchmark score the test split and read the model's capacity inside the
    training process (one torch import, not three): a fleet package takes ``train --test`` and prints exactly
    what ``evaluate`` and ``capacity --checkpoint`` say."""
    from scaffold.package_cli import PackageCLI

    cli = PackageCLI(FLEET / PACKAGES[0])
    train, valid, test = (
        cli.synth(tmp_path / f"{s}.parquet", rows=n, seed=i)
        for i, (s, n) in enumerate((("train", 300), ("valid", 100), ("test", 100)))
    )
    trained, tested = cli.train_and_test(train, valid, test, tmp_path / "run", ["epochs=1", "batch_size=64"])
    assert cli.accepts("train", "--test") and trained.test == tested and tested.rows == 100
    assert cli.evaluate(tmp_path / "run", test) == tested
    assert trained.capacity == cli.capacity(tmp_path / "run") == cli.run_capacity(trained, tmp_path / "run")


@pytest.mark.parametrize("where", ["missing.yaml", "folder"])
def test_a_fleet_file_that_is_not_a_file_is_one_line(tmp_path, capsys, where):
    from scaffold.cli import main

    (tmp_path / "folder").mkdir()
    assert main(["--repo", str(REPO), "--fleet", str(tmp_path / where), "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"fleet file {tmp_path / where} is not a file" in err and "\n" not in err  # was "not readable YAML"
