"""Package `bank_conversion`, rendered from the Standard Model Template (template-owned).

Predicts whether a bank marketing call converts into a term deposit

Commands: ``python -m bank_conversion train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
