"""Package `criteo_ctr`, rendered from the Standard Model Template (template-owned).

Predicts clicks on Criteo display ads

Commands: ``python -m criteo_ctr train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
