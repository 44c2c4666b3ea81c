import pytest

from .helpers import make_template_repo


@pytest.fixture
def template_repo(tmp_path):
    """A temp git repo (tag v1) holding a copy of this working tree's template."""
    return make_template_repo(tmp_path / "smt")
