"""Every template variant renders through copier, is black/ruff clean, and passes its own tests."""

from __future__ import annotations

import itertools

import pytest

from scaffold.status import render_answers

from .helpers import REPO, copy_template, run_package_tests, run_tool
from .test_tour import tour_commands

VARIANTS = (
    [
        {"interaction": interaction, "towers": "single", "events": ["click"]}
        for interaction in ("concat", "dot", "dcn_v2")
    ]
    + [
        {"interaction": interaction, "towers": towers, "events": ["click", "conversion"]}
        for interaction, towers in itertools.product(("concat", "dot", "dcn_v2"), ("single", "shared_bottom", "mmoe"))
    ]
    + [
        {"interaction": "dot", "towers": "single", "events": ["click"], "mlp_block": "residual"},
        {
            "interaction": "dcn_v2",
            "towers": "mmoe",
            "events": ["a", "b"],
            "mlp_block": "residual",
            "width_multiplier": 0.5,
        },
        {
            "interaction": "dot",
            "towers": "ple",
            "events": ["click", "buy", "share"],
            "qr_collisions": 4,
            "qr_min_rows": 30,
            "numeric_embedding": "periodic",
        },
    ]
)


WORKFLOW = ".github/workflows/ci.yml"


def _id(v: dict) -> str:
    extra = f"-{v['mlp_block']}" if "mlp_block" in v else ""
    extra += "-qr" if "qr_collisions" in v else ""
    extra += "-periodic" if v.get("numeric_embedding") == "periodic" else ""
    return f"{v['interaction']}-{v['towers']}-{len(v['events'])}ev{extra}"


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory):
    return copy_template(tmp_path_factory.mktemp("template"))


QUICK = {"concat-single-1ev", "dcn_v2-mmoe-2ev", "dot-ple-3ev-qr-periodic"}  # the rest only in the full run (slow)
# What the answers change is the model: its modules and sizing, training it, exporting it, the CLI end to end and
# the extension slots around it. The rest of a package's suite (data, caches, metrics, averaging, bad input,
# doctests) is the same code under every answer: the WHOLE variants run it whole, the others these files only.
# dcn_v2-mmoe-2ev are the answers of the README tour's ctr_feed, whose whole suite the tour runs (test_tour.py).
WHOLE = {"concat-single-1ev", "dot-ple-3ev-qr-periodic"}
MODEL_TESTS = ("test_modules.py", "test_training.py", "test_export.py", "test_cli.py", "test_extensions.py")


@pytest.mark.parametrize(
    "variant", [pytest.param(v, marks=() if _id(v) in QUICK else pytest.mark.slow) for v in VARIANTS], ids=_id
)
def test_variant_is_formatted_and_passes_its_own_tests(variant, template_dir, tmp_path):
    name = "pkg_" + _id(variant).replace("-", "_")
    package = render_answers(template_dir, {"name": name, **variant}, tmp_path / name)
    black = run_tool("black", "--check", "--quiet", ".", cwd=package)
    assert black.returncode == 0, f"rendered code is not black-formatted: {black.stderr}"
    ruff = run_tool("ruff", "check", "--quiet", ".", cwd=package)
    assert ruff.returncode == 0, ruff.stdout
    workflow = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", WORKFLOW, cwd=package)
    assert workflow.returncode == 0, workflow.stdout  # the package's own CI is a valid GitHub Actions workflow
    hooks = run_tool("pre-commit", "validate-config", ".pre-commit-config.yaml", cwd=package)
    assert hooks.returncode == 0, hooks.stdout + hooks.stderr
    files = [] if _id(variant) in WHOLE else [f"tests/{name}" for name in MODEL_TESTS]
    assert all((package / f).is_file() for f in files), "MODEL_TESTS names a file the template no longer has"
    tests = run_package_tests(package, *files, "-m", "not slow and not distributed")
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout


def test_the_readme_tour_runs_the_whole_suite_of_the_quick_variant_not_run_whole():
    """The claim above, kept true: the tour renders the QUICK variant that is not in WHOLE and runs its whole suite."""
    (variant,) = [v for v in VARIANTS if _id(v) in QUICK - WHOLE]
    commands = tour_commands((REPO / "README.md").read_text())
    new = f"smt new ctr_feed --events {','.join(variant['events'])} --interaction {variant['interaction']}"
    assert f"{new} --towers {variant['towers']} " in commands
    assert 'python -m pytest -m "not slow"\n' in commands or 'python -m pytest -m "not slow" ' in commands
