"""Package `flights_delay`, rendered from the Standard Model Template (template-owned).

Predicts whether a NYC flight arrives over 15 minutes late or is cancelled

Commands: ``python -m flights_delay train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
