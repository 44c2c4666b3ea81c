"""Package `flights_multi`, rendered from the Standard Model Template (template-owned).

Predicts late arrival and cancellation of a NYC flight

Commands: ``python -m flights_multi train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
