"""Package `adult_income`, rendered from the Standard Model Template (template-owned).

Predicts whether a census respondent earns more than 50K

Commands: ``python -m adult_income train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
