"""Package `credit_default`, rendered from the Standard Model Template (template-owned).

Predicts serious delinquency of a borrower within two years

Commands: ``python -m credit_default train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
