"""A representative subset of the fleet: K packages that stand for the others (DESIGN §7).

Descriptors are standardized (z-scores; a constant coordinate counts for nothing), clustered with k-means
(scikit-learn, fixed seed, ten restarts) into K clusters, and each cluster is represented by its member
nearest the cluster's centre (ties broken by name). The input is sorted by package name, so a given fleet
always yields the same subset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .descriptors import Descriptor
from .errors import SmtError


def default_k(n: int) -> int:
    """ceil(sqrt(n)) representatives (2 of 4, 4 of 10, 10 of 100): the subset grows slower than the fleet."""
    return max(1, min(n, math.ceil(math.sqrt(n))))


@dataclass(frozen=True)
class Subset:
    k: int
    representatives: list[str]  # sorted
    represented_by: dict[str, str]  # every package → the representative of its cluster
    cluster_of: dict[str, int]

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "representatives": self.representatives,
            "represented_by": self.represented_by,
            "cluster_of": self.cluster_of,
        }


def standardize(rows: list[list[float]]) -> list[list[float]]:
    columns = list(zip(*rows))
    out_columns = []
    for column in columns:
        mean = sum(column) / len(column)
        std = math.sqrt(sum((x - mean) ** 2 for x in column) / len(column))
        out_columns.append([(x - mean) / std if std > 1e-12 else 0.0 for x in column])
    return [list(r) for r in zip(*out_columns)]


def choose_subset(descriptors: list[Descriptor], k: int | None = None) -> Subset:
    """K representatives of ``descriptors`` (deterministic for a given set of descriptors)."""
    import numpy as np
    from sklearn.cluster import KMeans

    if not descriptors:
        raise SmtError("the fleet has no package to choose a subset from")
    descriptors = sorted(descriptors, key=lambda d: d.package)
    n = len(descriptors)
    k = default_k(n) if k is None else k
    if not 1 <= k <= n:
        raise SmtError(f"--k must be between 1 and the number of packages ({n}), got {k}")
    points = np.array(standardize([d.vector() for d in descriptors]))
    distinct = len({tuple(p) for p in points.round(9).tolist()})
    if distinct < k:
        raise SmtError(f"only {distinct} distinct descriptors among {n} packages; use --k {distinct} or less")
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(points)
    represented_by, cluster_of, representatives = {}, {}, []
    for cluster in range(k):
        members = [i for i in range(n) if labels[i] == cluster]
        centre = points[members].mean(axis=0)
        best = min(members, key=lambda i: (float(((points[i] - centre) ** 2).sum()), descriptors[i].package))
        representatives.append(descriptors[best].package)
        for i in members:
            represented_by[descriptors[i].package] = descriptors[best].package
    # number clusters by their representative's name, so the output does not depend on k-means' label order
    order = {name: i for i, name in enumerate(sorted(representatives))}
    for d in descriptors:
        cluster_of[d.package] = order[represented_by[d.package]]
    return Subset(k, sorted(representatives), represented_by, cluster_of)
