"""Feature schema: load and validate ``features.yaml`` (template-owned).

The schema names the label columns (one per event) and the sparse, multi-hot and dense features. It is the
model-owned input of the package; this module only reads and checks it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import SchemaError

SPARSE_ENCODINGS = ("vocab", "hash")
DENSE_TRANSFORMS = ("none", "log", "standardize", "log_standardize")
DENSE_FILLS = ("mean", "zero")
TOP_LEVEL_KEYS = {"labels", "sparse", "multi_hot", "dense", "file_columns"}


@dataclass(frozen=True)
class SparseFeature:
    """A categorical id column: a vocabulary fit on train, or hashed into ``buckets``."""

    name: str
    encoding: str = "vocab"
    buckets: int = 0
    min_count: int = 1
    cardinality: int = 100  # only a hint for `synth` and for `capacity` before training


@dataclass(frozen=True)
class MultiHotFeature:
    """A list of ids in one string column, e.g. ``"Action|Comedy"``; pooled by mean."""

    name: str
    separator: str = "|"
    max_length: int = 8
    min_count: int = 1
    cardinality: int = 20


@dataclass(frozen=True)
class DenseFeature:
    """A numeric column; missing values are filled, then transformed with statistics of train.

    ``buckets`` > 0 also embeds the value's quantile bucket (edges fit on train) as one more sparse vector;
    ``missing_indicator`` adds a 0/1 dense column that says the value was missing.
    """

    name: str
    transform: str = "standardize"
    fill: str = "mean"
    buckets: int = 0
    missing_indicator: bool = False


@dataclass(frozen=True)
class FeatureSchema:
    """The whole schema. ``file_columns`` names the columns of header-less delimited files (Criteo TSV)."""

    labels: tuple[str, ...]
    sparse: tuple[SparseFeature, ...] = ()
    multi_hot: tuple[MultiHotFeature, ...] = ()
    dense: tuple[DenseFeature, ...] = ()
    file_columns: tuple[str, ...] = field(default=())

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in (*self.sparse, *self.multi_hot, *self.dense)]

    @property
    def columns(self) -> list[str]:
        """Every column the schema reads: labels first, then features."""
        return [*self.labels, *self.feature_names]

    @property
    def bucketized(self) -> list[DenseFeature]:
        """Dense features that also get a quantile-bucket embedding (encoded after the sparse features)."""
        return [f for f in self.dense if f.buckets]

    @property
    def dense_width(self) -> int:
        """Columns of the encoded dense matrix: the values, then the missing indicators."""
        return len(self.dense) + sum(f.missing_indicator for f in self.dense)

    @property
    def header_less_columns(self) -> list[str]:
        return list(self.file_columns) or self.columns

    def to_dict(self) -> dict:
        return asdict(self)

    def check_events(self, events: tuple[str, ...]) -> None:
        """The labels must be the package's events, in order (one head per event)."""
        if tuple(self.labels) != tuple(events):
            raise SchemaError(
                f"features.yaml labels {list(self.labels)} differ from the package's events {list(events)}; "
                "make them equal (events are a template answer)"
            )

    def fingerprint(self) -> str:
        """A short hash of what a trained model depends on; checkpoints carry it to refuse a mismatched schema.

        The file layout (``file_columns``) is left out: declaring how a file is laid out changes no model.
        """
        return model_fingerprint(self.to_dict())

    def layout_fingerprint(self) -> str:
        """A short hash of the whole schema, file layout included (what encoding a file depends on)."""
        return _short_hash(self.to_dict())


LAYOUT_KEYS = ("file_columns",)


def model_fingerprint(schema_dict: dict) -> str:
    """The fingerprint of a schema as stored in a checkpoint's meta (see FeatureSchema.fingerprint)."""
    return _short_hash({k: v for k, v in schema_dict.items() if k not in LAYOUT_KEYS})


def _short_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_schema(path: str | Path) -> FeatureSchema:
    """Read and validate a features.yaml file; raise SchemaError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"feature schema {path} not found; create it (see the package README)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SchemaError(f"{path} is not valid YAML{where}; fix its syntax") from None
    return schema_from_dict(raw, source=str(path))


def schema_from_dict(raw: object, source: str = "features.yaml") -> FeatureSchema:
    """Validate a parsed schema mapping (see load_schema)."""
    if not isinstance(raw, dict):
        raise SchemaError(f"{source} must be a mapping with keys labels, sparse, multi_hot, dense")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise SchemaError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    labels = raw.get("labels")
    if not labels or not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) and x for x in labels):
        raise SchemaError(f"{source}: 'labels' must list at least one label column, e.g. labels: [click]")
    layout = raw.get("file_columns") or []
    if not isinstance(layout, (list, tuple)) or not all(isinstance(x, str) and x for x in layout):
        raise SchemaError(f"{source}: 'file_columns' must list the file's column names, e.g. [click, i1, c1]")
    schema = FeatureSchema(
        labels=tuple(labels),
        sparse=tuple(_features(raw, "sparse", SparseFeature, source)),
        multi_hot=tuple(_features(raw, "multi_hot", MultiHotFeature, source)),
        dense=tuple(_features(raw, "dense", DenseFeature, source)),
        file_columns=tuple(layout),
    )
    _check_schema(schema, source)
    return schema


def _features(raw: dict, key: str, kind: type, source: str) -> list:
    entries = raw.get(key) or []
    if not isinstance(entries, (list, tuple)):
        raise SchemaError(f"{source}: '{key}' must be a list of features")
    allowed = set(kind.__dataclass_fields__)
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise SchemaError(f"{source}: {key}[{i}] needs a 'name' (a column name)")
        extra = set(entry) - allowed
        if extra:
            raise SchemaError(
                f"{source}: {key} feature '{entry['name']}' has unknown key(s) {sorted(extra)}; "
                f"allowed: {sorted(allowed)}"
            )
        out.append(kind(**entry))
    return out


def _check_schema(schema: FeatureSchema, source: str) -> None:
    names = schema.columns
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SchemaError(f"{source}: duplicate column(s) {dupes}; each column may appear once")
    if not schema.feature_names:
        raise SchemaError(f"{source}: declares no feature; add at least one sparse, multi_hot or dense feature")
    for f in schema.sparse:
        if f.encoding not in SPARSE_ENCODINGS:
            raise SchemaError(
                f"{source}: sparse feature '{f.name}' has unknown encoding '{f.encoding}'; "
                f"use one of {list(SPARSE_ENCODINGS)}"
            )
        if f.encoding == "hash" and (not isinstance(f.buckets, int) or f.buckets < 2):
            raise SchemaError(f"{source}: hashed feature '{f.name}' needs buckets >= 2, e.g. buckets: 100000")
        if f.encoding == "vocab" and f.buckets != 0:  # a vocabulary sizes itself: an ignored option would mislead
            raise SchemaError(
                f"{source}: sparse feature '{f.name}' sets buckets ({f.buckets!r}) but has vocab encoding; "
                "add encoding: hash to hash it into that many buckets, or drop buckets"
            )
    for f in (*schema.sparse, *schema.multi_hot):
        if not isinstance(f.min_count, int) or f.min_count < 1:
            raise SchemaError(f"{source}: feature '{f.name}' needs min_count >= 1")
        if not isinstance(f.cardinality, int) or f.cardinality < 1:
            raise SchemaError(f"{source}: feature '{f.name}' needs cardinality >= 1")
    for f in schema.multi_hot:
        if not isinstance(f.max_length, int) or f.max_length < 1 or not f.separator:
            raise SchemaError(f"{source}: multi_hot feature '{f.name}' needs max_length >= 1 and a separator")
    for f in schema.dense:
        if f.transform not in DENSE_TRANSFORMS:
            raise SchemaError(
                f"{source}: dense feature '{f.name}' has unknown transform '{f.transform}'; "
                f"use one of {list(DENSE_TRANSFORMS)}"
            )
        if not isinstance(f.buckets, int) or f.buckets < 0 or f.buckets == 1 or f.buckets > 100_000:
            raise SchemaError(f"{source}: dense feature '{f.name}' needs buckets 0 (off) or 2..100000")
        if not isinstance(f.missing_indicator, bool):
            raise SchemaError(f"{source}: dense feature '{f.name}': missing_indicator must be true or false")
        if f.fill not in DENSE_FILLS:
            raise SchemaError(
                f"{source}: dense feature '{f.name}' has unknown fill '{f.fill}'; use one of {list(DENSE_FILLS)}"
            )
    missing = [c for c in schema.columns if schema.file_columns and c not in schema.file_columns]
    if missing:
        raise SchemaError(f"{source}: file_columns lacks declared column(s) {missing}")
