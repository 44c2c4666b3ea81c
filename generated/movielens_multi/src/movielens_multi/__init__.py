"""Package `movielens_multi`, rendered from the Standard Model Template (template-owned).

Predicts like (rating >= 4) and love (rating 5) of a MovieLens user for a movie

Commands: ``python -m movielens_multi train|evaluate|export|synth|capacity`` (see README.md).
"""

from .spec import SPEC

__all__ = ["SPEC"]
