"""`smt new`: one command gives a working package, identical to `copier copy`; bad input writes nothing."""

from __future__ import annotations

import pytest
import yaml

from scaffold import SmtError, TemplateRepo, new_package
from scaffold.cli import main
from scaffold.errors import InvalidAnswers, PackageExists, TemplateDirty

from .helpers import commit_all, git, run_tool, tree_files


def test_new_equals_copier_copy(template_repo, tmp_path):
    repo = TemplateRepo.find(template_repo)
    created = new_package(repo, "ctr_feed", {"events": ["click", "buy"], "interaction": "dot"})
    assert created.path == template_repo / "generated" / "ctr_feed"
    assert created.answers["_commit"] == "v1" and created.answers["_src_path"] == "."
    plain = run_tool(
        "copier",
        "copy",
        "-q",
        "--defaults",
        "--data",
        "name=ctr_feed",
        "--data",
        "events=[click, buy]",
        "--data",
        "interaction=dot",
        ".",
        str(tmp_path / "plain"),
        cwd=template_repo,
    )
    assert plain.returncode == 0, plain.stderr
    assert tree_files(created.path) == tree_files(tmp_path / "plain")


def test_answers_record_an_existing_commit_even_with_dirty_files_elsewhere(template_repo):
    git(template_repo, "tag", "-d", "v1")
    (template_repo / "notes.txt").write_text("uncommitted, outside the template\n")
    created = new_package(TemplateRepo.find(template_repo), "ctr_a")
    head = git(template_repo, "rev-parse", "HEAD").strip()
    assert head.startswith(created.answers["_commit"])


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("Bad-Name", {}, "lower snake-case"),
        ("class", {}, "reserved"),
        ("ok", {"towers": "mmoe"}, "needs two or more events"),
        ("ok", {"interaction": "fm"}, "Invalid choice"),
        ("ok", {"events": []}, "non-empty YAML list"),
        ("ok", {"events": ["a", "a"]}, "unique"),
        ("ok", {"events": ["a b"]}, "identifier-like"),
        ("ok", {"embedding_dim": 0}, "embedding_dim must be in"),
        ("ok", {"over_arch": [64, -1]}, "over_arch sizes must be ints"),
        ("ok", {"over_arch": "wide"}, "over_arch must be a non-empty YAML list"),
        ("ok", {"interaction": "dcn_v2", "dcn_rank": 0}, "dcn_rank must be in"),
    ],
)
def test_invalid_answers_write_nothing(template_repo, name, data, message):
    before = git(template_repo, "status", "--porcelain", "--ignored")
    with pytest.raises(InvalidAnswers, match=message):
        new_package(TemplateRepo.find(template_repo), name, data)
    assert not (template_repo / "generated").exists() or not any((template_repo / "generated").iterdir())
    assert git(template_repo, "status", "--porcelain", "--ignored") == before


def test_existing_destination_is_refused(template_repo):
    repo = TemplateRepo.find(template_repo)
    first = new_package(repo, "ctr_a")
    (first.path / "README.md").write_text("mine\n")
    with pytest.raises(PackageExists):
        new_package(repo, "ctr_a")
    assert (first.path / "README.md").read_text() == "mine\n"


@pytest.mark.parametrize("where", ["FILE", "FILE/pkg", "LINK/pkg"])
def test_a_destination_that_is_or_lies_under_a_file_or_broken_link_is_one_line(
    template_repo, tmp_path, capsys, taken, where
):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    dest = where.replace("FILE", str(taken)).replace("LINK", str(tmp_path / "link"))
    assert main(["--repo", str(template_repo), "new", "ctr_a", "--dest", dest]) == 2
    err = capsys.readouterr().err.strip()
    said = "is a file; a package's files go in a folder" if where == "FILE" else "is a file, not a folder"
    said = "link is a broken link, not a folder" if where.startswith("LINK") else said
    assert said in err and "\n" not in err and taken.read_text() == "mine\n" and not (tmp_path / "gone").exists()


def test_uncommitted_template_change_is_refused(template_repo):
    (template_repo / "template_repo" / "NOTES.md").write_text("draft\n")
    with pytest.raises(TemplateDirty, match="commit them first"):
        new_package(TemplateRepo.find(template_repo), "ctr_a")


def test_features_file_seeds_the_model_owned_schema(template_repo, tmp_path):
    features = tmp_path / "features.yaml"
    features.write_text(yaml.safe_dump({"labels": ["label"], "dense": ["x"]}))
    created = new_package(TemplateRepo.find(template_repo), "ctr_a", features=features)
    assert (created.path / "src" / "ctr_a" / "features.yaml").read_text() == features.read_text()
    features.write_text(yaml.safe_dump({"labels": ["click"], "dense": ["x"]}))
    with pytest.raises(SmtError, match="labels"):
        new_package(TemplateRepo.find(template_repo), "ctr_b", features=features)
    assert not (template_repo / "generated" / "ctr_b").exists()


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"labels": ["label"], "dense": ["x"], "sparse": ["x"]}, r"duplicate column\(s\) \['x'\]"),
        ({"labels": ["label"], "dense": [{"name": "x", "transform": "cube"}]}, "unknown transform 'cube'"),
        ({"labels": ["label"], "sparse": [{"name": "u", "encoding": "hash"}]}, "needs buckets >= 2"),
        ({"labels": ["label"], "colour": ["x"]}, r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_a_features_file_the_package_would_refuse_writes_nothing(template_repo, tmp_path, schema, message):
    features = tmp_path / "features.yaml"
    features.write_text(yaml.safe_dump(schema))
    before = git(template_repo, "status", "--porcelain", "--ignored")
    with pytest.raises(SmtError, match=f"--features: {features}: .*{message}"):
        new_package(TemplateRepo.find(template_repo), "ctr_a", features=features)
    assert not (template_repo / "generated").exists() or not any((template_repo / "generated").iterdir())
    assert git(template_repo, "status", "--porcelain", "--ignored") == before


def test_cli_reports_one_line_errors(template_repo, capsys):
    assert main(["--repo", str(template_repo), "new", "ctr_a", "--towers", "mmoe"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert main(["--repo", str(template_repo), "new", "ctr_a", "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    for empty in ("", " , "):  # an empty list is an invalid answer, not the default
        assert main(["--repo", str(template_repo), "new", "ctr_a", "--events", empty]) == 2
        assert "non-empty YAML list" in capsys.readouterr().err
        assert not (template_repo / "generated" / "ctr_a").exists()
    assert main(["--repo", str(template_repo), "new", "ctr_a", "--events", "click,buy", "--embedding-dim", "8"]) == 0
    answers = yaml.safe_load((template_repo / "generated" / "ctr_a" / ".copier-answers.yml").read_text())
    assert answers["events"] == ["click", "buy"] and answers["embedding_dim"] == 8 and answers["towers"] == "mmoe"


def test_outside_a_template_repository(tmp_path):
    with pytest.raises(SmtError, match="not inside a git repository"):
        TemplateRepo.find(tmp_path)


def test_design_spellings_data_and_to_work_as_set_and_ref(template_repo, capsys):
    assert main(["--repo", str(template_repo), "new", "ctr_a", "--data", "embedding_dim=8", "--set", "dcn_rank=8"]) == 0
    assert "warning" not in capsys.readouterr().err
    answers = yaml.safe_load((template_repo / "generated" / "ctr_a" / ".copier-answers.yml").read_text())
    assert answers["embedding_dim"] == 8 and answers["dcn_rank"] == 8
    commit_all(template_repo, "fleet")
    assert main(["--repo", str(template_repo), "sync", "--to", "v1", "--no-test"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["--repo", str(template_repo), "sync", "--to", "v9", "--no-test"]) != 0  # --to is the target
    assert "v9" in capsys.readouterr().err
