"""Package `movielens_like`, rendered from the Standard Model Template (template-owned).

Predicts whether a MovieLens user likes a movie (rating >= 4)

Commands: ``python -m movielens_like train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
