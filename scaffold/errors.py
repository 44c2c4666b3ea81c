"""Typed errors of the smt library. Each carries a one-line message saying what was wrong and how to fix it."""


class SmtError(Exception):
    """Base of every user-facing error; the CLI prints it as one line and exits 2."""


class NotATemplateRepo(SmtError):
    """The path is not inside a git repository holding the template (copier.yml + template_repo/)."""


class InvalidAnswers(SmtError):
    """An answer failed the template's validators; nothing was written."""


class PackageExists(SmtError):
    """The destination of a new package already exists; nothing was written."""


class TemplateDirty(SmtError):
    """The template has uncommitted changes that a render at a commit would silently leave out."""


class GitError(SmtError):
    """A git command failed."""
