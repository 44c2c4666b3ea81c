import pytest

from .helpers import make_template_repo


@pytest.fixture
def template_repo(tmp_path):
    """A temp git repo (tag v1) holding a copy of this working tree's template."""
    return make_template_repo(tmp_path / "smt")


@pytest.fixture
def taken(tmp_path):
    """A file (``tmp_path/taken``, "mine") where a command's output folder would go; the refusal tests check it
    is left as it was."""
    path = tmp_path / "taken"
    path.write_text("mine\n")
    return path
