"""Shared fixtures of the package's own tests (template-owned)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bank_conversion import extensions
from bank_conversion.data import write_table
from bank_conversion.schema import schema_from_dict
from bank_conversion.spec import SPEC
from bank_conversion.stages import Extension
from bank_conversion.synth import synthesize


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """The encoded-data cache of this test session: a temp folder, never the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SMT_DATA_CACHE", str(tmp_path_factory.mktemp("data-cache")))
        yield


PACKAGE_EXTENSION = getattr(extensions, "extension", None)
SRC = Path(__file__).parents[1] / "src"


@pytest.fixture(scope="session")
def fresh_python():
    """``fresh_python(*args, timeout=300, **env)``: ``python *args`` in a fresh interpreter that imports this
    package from its source tree, with ``env`` added to this session's environment; its output captured as text."""

    def run(*args: str, timeout: float | None = 300, **env: str) -> subprocess.CompletedProcess:
        environ = {**os.environ, "PYTHONPATH": str(SRC), **env}
        return subprocess.run([sys.executable, *args], env=environ, timeout=timeout, capture_output=True, text=True)

    return run


@pytest.fixture(scope="session", autouse=True)
def template_stages():
    """Template-owned tests check the template's stages on schemas of their own, so the package's extension
    (sized to its own features.yaml) is swapped for the empty one for the session. Tests marked
    ``package_extension`` get it back; the CLI tests run the package as its user does, with its extension."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(extensions, "extension", lambda spec, layout: Extension(), raising=False)
        yield


@pytest.fixture(autouse=True)
def package_extension(request, monkeypatch):
    if request.node.get_closest_marker("package_extension") is not None:
        if PACKAGE_EXTENSION is None:  # a package still on the earlier hook, extend_model
            monkeypatch.delattr(extensions, "extension")
        else:
            monkeypatch.setattr(extensions, "extension", PACKAGE_EXTENSION)


@pytest.fixture(scope="session")
def tiny_schema():
    """A small schema with every kind of feature and this package's events as labels."""
    return schema_from_dict(
        {
            "labels": list(SPEC.events),
            "sparse": [
                {"name": "user", "cardinality": 60},
                {"name": "item", "encoding": "hash", "buckets": 64, "cardinality": 40},
            ],
            "multi_hot": [{"name": "tags", "max_length": 4, "cardinality": 12}],
            "dense": [
                {"name": "price", "transform": "log_standardize", "buckets": 16, "missing_indicator": True},
                {"name": "age"},
            ],
        }
    )


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory, tiny_schema):
    """Synthetic train (Parquet) and valid (CSV) files of the tiny schema."""
    root = tmp_path_factory.mktemp("data")
    train, valid = root / "train.parquet", root / "valid.csv"
    write_table(synthesize(tiny_schema, 3000, seed=1), train, tiny_schema)
    write_table(synthesize(tiny_schema, 1000, seed=2), valid, tiny_schema)
    return train, valid


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_schema, tiny_files):
    """A short training run of the tiny schema: (run dir, summary)."""
    from bank_conversion.config import config_from_dict
    from bank_conversion.train import train

    out = tmp_path_factory.mktemp("run") / "run"
    config = config_from_dict({"epochs": 3, "batch_size": 256, "warmup_steps": 5, "log_every": 4})
    return out, train(*tiny_files, out, config, tiny_schema, show_progress=False)
