"""SMT — the Standard Model Template tool: create models from one template, report the fleet's status.

The library returns data and raises :class:`SmtError` subclasses; ``scaffold.cli`` is the thin CLI ``smt``.
"""

from .errors import SmtError
from .fleet import Package, discover
from .new import NewPackage, new_package
from .status import PackageStatus, fleet_status
from .sync import SyncResult, sync_fleet
from .template import TemplateRepo

__all__ = [
    "NewPackage",
    "Package",
    "PackageStatus",
    "SmtError",
    "TemplateRepo",
    "discover",
    "fleet_status",
    "new_package",
    "SyncResult",
    "sync_fleet",
]
