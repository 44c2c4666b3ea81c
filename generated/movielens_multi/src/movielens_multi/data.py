"""Data readers: Parquet, CSV and header-less delimited files such as Criteo TSV (template-owned).

Every reader returns a ``pyarrow.Table`` with exactly the schema's columns, checked: present, labels binary
with no missing value, dense values numeric and finite. Missing-value policy: a null, an empty cell or a NaN
in a dense column is *missing* (filled as features.yaml says); ``inf`` and ``-inf`` are errors, since no
fill is right for them and one of them turns every weight it touches into NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .atomic import replacing
from .errors import DataError
from .schema import FeatureSchema

HEADER_LESS_HINT = (
    "the file has no header and features.yaml has no file_columns, so its columns were read in schema order "
    "(labels, sparse, multi_hot, dense); declare file_columns with the file's real column order"
)
PARQUET_SUFFIXES = {".parquet", ".pq"}
DELIMITED_SUFFIXES = {".csv", ".tsv", ".txt"}


def read_table(path: str | Path, schema: FeatureSchema, require_labels: bool = True) -> pa.Table:
    """Read a data file and return the schema's columns (labels only when ``require_labels``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} not found")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty")
    suffix = path.suffix.lower()
    header_less = False
    if suffix in PARQUET_SUFFIXES:
        table = _read_parquet(path)
    elif suffix in DELIMITED_SUFFIXES:
        table, header_less = _read_delimited(path, schema)
    else:
        raise DataError(f"data file {path}: unknown format '{suffix}'; use .parquet, .csv, .tsv or .txt")
    if table.num_rows == 0:
        raise DataError(f"data file {path} has no rows")
    wanted = schema.columns if require_labels else schema.feature_names
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(f"data file {path} lacks column(s) {missing} declared in features.yaml")
    table = table.select(wanted)
    try:
        _check_dense(table, schema, path)
        if require_labels:
            _check_labels(table, schema, path)
    except DataError as exc:
        if header_less and not schema.file_columns:
            raise DataError(f"{exc} ({HEADER_LESS_HINT})") from None
        raise
    return table


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"data file {path} is not readable Parquet ({_first_line(exc)})") from None


def _read_delimited(path: Path, schema: FeatureSchema) -> tuple[pa.Table, bool]:
    """CSV with a header, or a header-less file whose columns are the schema's ``file_columns``.

    Returns the table and whether the file had no header (its columns were then named by position).
    """
    with path.open("r", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
    delimiter = "\t" if "\t" in first else ","
    fields = [field.strip().strip('"') for field in first.split(delimiter)]
    has_header = bool(set(fields) & set(schema.columns))
    read_opts = pcsv.ReadOptions(column_names=None if has_header else schema.header_less_columns)
    if not has_header and len(fields) != len(schema.header_less_columns):
        raise DataError(
            f"data file {path} has no header and {len(fields)} fields per row, but features.yaml expects "
            f"{len(schema.header_less_columns)} (file_columns); add a header row or fix file_columns"
        )
    convert = pcsv.ConvertOptions(
        column_types={f.name: pa.string() for f in (*schema.sparse, *schema.multi_hot)},
        strings_can_be_null=True,
    )
    try:
        table = pcsv.read_csv(
            path,
            read_options=read_opts,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=convert,
        )
        return table, not has_header
    except pa.ArrowInvalid as exc:
        raise DataError(f"data file {path} could not be parsed ({_first_line(exc)})") from None


def _check_dense(table: pa.Table, schema: FeatureSchema, path: Path) -> None:
    for f in schema.dense:
        column = table.column(f.name)
        if pa.types.is_integer(column.type) or pa.types.is_null(column.type):
            continue
        if pa.types.is_floating(column.type):
            _check_finite(column, f.name, path)
            continue
        as_text = pc.cast(column, pa.string())
        try:
            _check_finite(pc.cast(as_text, pa.float64()), f.name, path)
        except pa.ArrowInvalid:
            row, value = next((i, v) for i, v in enumerate(as_text.to_pylist()) if not _is_number(v))
            raise DataError(
                f"data file {path}: dense column '{f.name}' has a non-numeric value {value!r} (row {row}); "
                "clean it or declare the column sparse"
            ) from None


def _check_finite(column: pa.ChunkedArray, name: str, path: Path) -> None:
    infinite = pc.fill_null(pc.is_inf(column), False)
    if pc.any(infinite).as_py():
        row = int(np.flatnonzero(infinite.to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"data file {path}: dense column '{name}' has a non-finite value {column[row].as_py()} (row {row}); "
            "replace it, or leave the cell empty to mark it missing"
        )


def _is_number(text: str | None) -> bool:
    if text is None:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_labels(table: pa.Table, schema: FeatureSchema, path: Path) -> None:
    for label in schema.labels:
        column = table.column(label)
        try:
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(f"data file {path}: label column '{label}' is not numeric (0/1 expected)") from None
        missing = int(np.isnan(values).sum())  # a null reads as NaN in ``values``: counted once
        if missing:
            raise DataError(f"data file {path}: label column '{label}' has {missing} missing/NaN value(s)")
        bad = values[(values != 0) & (values != 1)]
        if bad.size:
            raise DataError(f"data file {path}: label column '{label}' must be binary 0/1; found {bad[0]:g}")


def parquet_row_groups(path: str | Path) -> list[int]:
    """Rows of each row group of a Parquet file (streaming reads one group at a time)."""
    path = Path(path)
    if path.suffix.lower() not in PARQUET_SUFFIXES:
        raise DataError(f"streaming needs a Parquet file (read by row groups); {path} is not one")
    if not path.is_file():
        raise DataError(f"data file {path} not found")
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"data file {path} is not readable Parquet ({_first_line(exc)})") from None
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def read_row_group(path: str | Path, schema: FeatureSchema, group: int) -> pa.Table:
    """One row group with the schema's columns, checked like ``read_table``."""
    path = Path(path)
    try:
        table = pq.ParquetFile(path).read_row_group(group, columns=schema.columns)
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise DataError(f"data file {path}, row group {group}: not readable ({_first_line(exc)})") from None
    _check_dense(table, schema, path)
    _check_labels(table, schema, path)
    return table


class ParquetColumns:
    """A Parquet file read one column at a time: what ``Preprocessor.fit`` needs, in the memory of one column."""

    def __init__(self, path: str | Path, schema: FeatureSchema):
        parquet_row_groups(path)  # a clear error for a missing or non-Parquet file
        self.path = Path(path)
        self.column_names = schema.columns

    def column(self, name: str) -> pa.ChunkedArray:
        try:
            return pq.read_table(self.path, columns=[name]).column(name)
        except (pa.ArrowInvalid, OSError, KeyError) as exc:
            raise DataError(f"data file {self.path}: column '{name}' not readable ({_first_line(exc)})") from None


def write_table(table: pa.Table, path: str | Path, schema: FeatureSchema) -> None:
    """Write a table as Parquet, CSV (with header) or header-less TSV/TXT, chosen by suffix (atomically)."""
    path = writable(path)
    suffix = path.suffix.lower()
    with replacing(path) as tmp:
        if suffix in PARQUET_SUFFIXES:
            pq.write_table(table, tmp)
        elif suffix == ".csv":
            pcsv.write_csv(table, tmp)
        else:
            ordered = table.select(schema.header_less_columns)
            options = pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
            pcsv.write_csv(ordered, tmp, write_options=options)


def writable(path: str | Path) -> Path:
    """``path`` as a file ``write_table`` can write (a one-line DataError for a folder or an unknown suffix), so a
    caller can check it before it makes the rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():  # before the suffix: a folder named "data" is not an unknown format
        example = path / f"train{suffix or '.parquet'}"
        raise DataError(f"cannot write {path}: it is a directory; give a file path, e.g. {example}")
    if suffix not in PARQUET_SUFFIXES | DELIMITED_SUFFIXES:
        raise DataError(f"cannot write {path}: unknown format '{suffix}'; use .parquet, .csv or .tsv")
    return path


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
