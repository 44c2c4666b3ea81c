"""The model-owned boundary: a real extension in every stage slot survives a template upgrade untouched, and
packages made with the previous hook are carried over by the template's migration."""

from __future__ import annotations

import hashlib
import shutil

import yaml

from scaffold import TemplateRepo, new_package, runner, sync_fleet
from scaffold.package_cli import PackageCLI

from .helpers import REPO, commit_all, git, make_template_repo

EXTENSION = REPO / "examples" / "extensions_every_slot.py"
TEMPLATE_SRC = "template_repo/src/{{ name }}"

# extensions.py as v0.2.0 made it (before stage slots): the text the v0.3.0 migration recognises.
LEGACY_EXTENSIONS = (  # noqa: E501
    '''"""Extension hook of this model (model-owned: created once, never overwritten by a template update).

Put model-specific code here instead of editing template-owned files, so template upgrades keep reaching
this package. If two models need the same change, propose it for the template instead.
"""

from __future__ import annotations

from torch import nn


def extend_model(model: nn.Module, spec) -> nn.Module:
    """Called on every freshly built model (train, evaluate, export); return the model to use.

    ``spec`` is the package's ModelSpec. The returned model must keep the forward signature
    ``(sparse, dense, multi_hot) -> logits (B, E)``.
    """
    return model
'''
)


def test_an_extension_in_every_slot_survives_a_template_upgrade(tmp_path):
    root = make_template_repo(tmp_path / "smt")
    repo = TemplateRepo.find(root)
    package = new_package(repo, "ctr_ext", {"events": ["click", "buy"], "towers": "mmoe"}).path
    extension = package / "src" / "ctr_ext" / "extensions.py"
    shutil.copy(EXTENSION, extension)
    commit_all(root, "ctr_ext with an extension in every slot")
    cli, data, run = PackageCLI(package), package / "data", tmp_path / "run"
    train, valid = cli.synth(data / "train.parquet", 3000, seed=1), cli.synth(data / "valid.parquet", 1000, seed=2)
    summary = cli.train(train, valid, run, ["epochs=2", "batch_size=256"])
    assert all(m.auc > 0.55 for m in summary.valid.values()), summary.valid
    assert cli.evaluate(run, valid).events["click"].ne == summary.valid["click"].ne
    exported = cli.export(run, run / "m.pt2")
    assert exported.artifact.is_file() and exported.parity_max_abs_diff < 1e-4
    assert cli.capacity(run).embedding_parameters > 1009 * 16  # the extension's sparse table is an embedding

    metrics = root / TEMPLATE_SRC / "metrics.py"
    metrics.write_text(metrics.read_text().replace("EPS = 1e-7\n", "EPS = 1e-6\n"))
    commit_all(root, "template: EPS")
    git(root, "tag", "v2")
    before = extension.read_bytes()
    [result] = sync_fleet(repo)  # with the package's own fast tests, as a user runs it
    assert result.result == "updated", result.reason
    assert extension.read_bytes() == before
    assert "EPS = 1e-6" in (package / "src" / "ctr_ext" / "metrics.py").read_text()
    again = cli.train(train, valid, tmp_path / "run2", ["epochs=1", "batch_size=256"])
    assert set(again.valid) == {"click", "buy"}


def test_a_broken_extension_fails_at_build_time_with_one_line(tmp_path):
    root = make_template_repo(tmp_path / "smt")
    package = new_package(TemplateRepo.find(root), "ctr_bad", {}).path
    text = EXTENSION.read_text().replace("self.output_dim = 2 * dim", "self.output_dim = 0")
    (package / "src" / "ctr_bad" / "extensions.py").write_text(text)
    proc = runner.run_cli(package, "capacity")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: extension slot 'interaction' must have a positive int attribute output_dim, got 0"
    )


def _legacy_template(root) -> None:
    """Turn a copy of the template back into the previous release's hook: extend_model, no migration."""
    (root / TEMPLATE_SRC / "extensions.py").write_text(LEGACY_EXTENSIONS)
    config = yaml.safe_load((root / "copier.yml").read_text())
    assert config["_migrations"][0]["version"] == "v0.3.0"
    text = (root / "copier.yml").read_text()
    (root / "copier.yml").write_text(text[: text.index("_migrations:")] + text[text.index("\nname:") + 1 :])


def test_packages_on_the_previous_hook_are_migrated_by_the_template(tmp_path):
    current = REPO / TEMPLATE_SRC / "extensions.py"
    assert hashlib.sha256(LEGACY_EXTENSIONS.encode()).hexdigest() in (REPO / "copier.yml").read_text()
    root = make_template_repo(tmp_path / "smt", tag=None)
    _legacy_template(root)
    commit_all(root, "template v0.2.0")
    git(root, "tag", "v0.2.0")
    repo = TemplateRepo.find(root)
    untouched = new_package(repo, "ctr_plain", {}).path / "src" / "ctr_plain" / "extensions.py"
    edited = new_package(repo, "ctr_edited", {}).path / "src" / "ctr_edited" / "extensions.py"
    assert untouched.read_text() == LEGACY_EXTENSIONS
    edited.write_text(
        LEGACY_EXTENSIONS.replace("    return model\n", "    model.logit_shift.zero_()\n    return model\n")
    )
    commit_all(root, "fleet at v0.2.0")
    shutil.copy(REPO / "copier.yml", root / "copier.yml")
    shutil.copy(current, root / TEMPLATE_SRC / "extensions.py")
    commit_all(root, "template v0.3.0: stage slots")
    git(root, "tag", "v0.3.0")

    refused = sync_fleet(repo, run_tests=False)
    assert {r.result for r in refused} == {"refused"} and all("--trust" in r.reason for r in refused)
    results = sync_fleet(repo, run_tests=False, trust=True)
    assert {(r.name, r.result) for r in results} == {("ctr_plain", "updated"), ("ctr_edited", "updated")}
    assert untouched.read_text() == current.read_text()  # the old default became the new default
    assert "model.logit_shift.zero_()" in edited.read_text()  # an edited hook is the model's: kept
    for name in ("ctr_plain", "ctr_edited"):
        proc = runner.run_cli(root / "generated" / name, "capacity", "--json")
        assert proc.returncode == 0, proc.stderr
