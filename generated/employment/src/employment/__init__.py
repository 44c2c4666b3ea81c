"""Package `employment`, rendered from the Standard Model Template (template-owned).

Predicts whether a Massachusetts census respondent is employed

Commands: ``python -m employment train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
