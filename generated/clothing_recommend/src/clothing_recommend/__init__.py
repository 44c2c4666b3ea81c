"""Package `clothing_recommend`, rendered from the Standard Model Template (template-owned).

Predicts whether a shopper recommends a clothing item from her review

Commands: ``python -m clothing_recommend train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
