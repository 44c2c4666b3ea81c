"""Package `bio_rare`, rendered from the Standard Model Template (template-owned).

Predicts rare protein homology (about 0.9% positive)

Commands: ``python -m bio_rare train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
