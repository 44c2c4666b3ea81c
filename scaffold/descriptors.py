"""Model descriptors: what a package's model is, from its schema, answers, capacity and training data.

The descriptor is what qualification clusters on (DESIGN §7): data size, positive rates, events, feature
counts by kind, vocabulary sizes, dense FLOPs/example. Counts of rows and labels come from the package's own
training file; nothing is trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .errors import SmtError
from .fleet import Package
from .package_cli import PackageCLI


@dataclass(frozen=True)
class Descriptor:
    package: str
    rows: int  # training rows
    events: int
    positive_rate: float  # mean over events of the training positive rate
    min_positive_rate: float  # the rarest event's
    sparse: int
    multi_hot: int
    dense: int
    vocabulary: int  # rows of all embedding tables as declared (cardinality or hash buckets)
    dense_flops: float  # per example, from the package's capacity command
    multi_task: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def vector(self) -> list[float]:
        """The clustering coordinates: sizes on a log scale, rates as logits, counts as they are."""

        def logit(p: float) -> float:
            p = min(max(p, 1e-6), 1 - 1e-6)
            return math.log(p / (1 - p))

        return [
            math.log10(max(self.rows, 1)),
            float(self.events),
            logit(self.positive_rate),
            logit(self.min_positive_rate),
            float(self.sparse),
            float(self.multi_hot),
            float(self.dense),
            math.log10(1 + self.vocabulary),
            math.log10(max(self.dense_flops, 1.0)),
        ]


FIELDS = (
    "rows",
    "events",
    "positive_rate",
    "min_positive_rate",
    "sparse",
    "multi_hot",
    "dense",
    "vocabulary",
    "dense_flops",
)


def _schema(package: Package) -> dict:
    path = package.path / "src" / package.name / "features.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SmtError(f"{package.name}: cannot read {path} ({type(exc).__name__}); fix the schema") from None
    if not isinstance(raw, dict):
        raise SmtError(f"{package.name}: {path} must be a mapping with labels, sparse, multi_hot, dense")
    return raw


def _label_rates(train: Path, labels: list[str]) -> tuple[int, list[float]]:
    """Rows of ``train`` (Parquet or CSV) and the positive rate of each label column."""
    import pyarrow.compute as pc

    try:
        if train.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(train, columns=labels)
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(train, convert_options=pcsv.ConvertOptions(include_columns=labels))
    except Exception as exc:  # pyarrow raises many kinds for a corrupt or foreign file
        raise SmtError(f"cannot read labels {labels} from {train}: {exc}".splitlines()[0]) from None
    rates = []
    for label in labels:
        column = pc.cast(table.column(label), "float64")
        mean = pc.mean(column).as_py()
        rates.append(float(mean) if mean is not None else 0.0)
    return table.num_rows, rates


def describe(package: Package, train: Path, capacities: Path | None = None) -> Descriptor:
    """The descriptor of ``package`` whose training data is the file ``train`` (``capacities``: see
    ``PackageCLI``)."""
    schema = _schema(package)
    labels = list(schema.get("labels") or package.questions.get("events") or [])
    if not labels:
        raise SmtError(f"{package.name}: its features.yaml names no labels")
    rows, rates = _label_rates(train, labels)
    sparse, multi_hot, dense = (list(schema.get(k) or []) for k in ("sparse", "multi_hot", "dense"))
    vocabulary = sum(int(f.get("buckets") or f.get("cardinality") or 0) for f in (*sparse, *multi_hot))
    vocabulary += sum(int(f.get("buckets") or 0) for f in dense)
    capacity = PackageCLI(package.path, capacities=capacities).capacity()
    return Descriptor(
        package=package.name,
        rows=rows,
        events=len(labels),
        positive_rate=sum(rates) / len(rates),
        min_positive_rate=min(rates),
        sparse=len(sparse),
        multi_hot=len(multi_hot),
        dense=len(dense),
        vocabulary=vocabulary,
        dense_flops=capacity.dense_flops_per_example,
        multi_task=package.questions.get("towers", "single") != "single",
    )


def describe_fleet(
    packages: list[Package], train_of, workers: int = 4, capacities: Path | None = None
) -> tuple[list[Descriptor], list[str]]:
    """Descriptors of every package whose training file ``train_of(package)`` exists; the names of the others."""
    from concurrent.futures import ThreadPoolExecutor

    have = [p for p in packages if train_of(p).is_file()]
    missing = [p.name for p in packages if p not in have]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        descriptors = list(pool.map(lambda p: describe(p, train_of(p), capacities), have))
    return descriptors, missing
