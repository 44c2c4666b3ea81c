"""Every bad input gets a clear one-line error and writes nothing (template-owned)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from criteo_ctr.checkpoint import load_trained
from criteo_ctr.cli import main
from criteo_ctr.config import config_from_dict, load_config
from criteo_ctr.data import read_table
from criteo_ctr.errors import CheckpointError, ConfigError, DataError, ModelError, SchemaError
from criteo_ctr.schema import load_schema, schema_from_dict
from criteo_ctr.spec import SPEC
from criteo_ctr.train import Interrupted, train

LABELS = list(SPEC.events)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"labels": LABELS, "sparse": ["a", "a"]}, "duplicate column"),
        ({"labels": LABELS, "sparse": [{"encoding": "vocab"}]}, "needs a 'name'"),
        ({"labels": LABELS, "dense": [{"name": "x", "transform": "sqrt"}]}, "unknown transform 'sqrt'"),
        ({"labels": LABELS, "sparse": [{"name": "x", "encoding": "bloom"}]}, "unknown encoding"),
        ({"labels": LABELS, "sparse": [{"name": "x", "encoding": "hash"}]}, "needs buckets"),
        ({"labels": LABELS, "sparse": [{"name": "x", "buckets": 100}]}, r"sets buckets \(100\) but has vocab"),
        ({"labels": [""], "dense": ["x"]}, "'labels' must list"),
        ({"labels": LABELS, "dense": [{"name": ""}]}, r"dense\[0\] needs a 'name'"),
        ({"labels": LABELS, "dense": ["x"], "file_columns": "x,label"}, "'file_columns' must list"),
        ({"sparse": ["a"]}, "'labels' must list"),
        ({"labels": LABELS}, "declares no feature"),
        ({"labels": LABELS, "dense": ["x"], "colour": 1}, "unknown key"),
        ({"labels": LABELS, "dense": [{"name": "x", "scale": 2}]}, "unknown key"),
    ],
)
def test_bad_schema_is_refused(raw, message):
    with pytest.raises(SchemaError, match=message):
        schema_from_dict(raw)


def test_invalid_yaml_schema_names_the_line(tmp_path):
    path = tmp_path / "features.yaml"
    path.write_text("labels: [a\nsparse: -")
    with pytest.raises(SchemaError, match="not valid YAML"):
        load_schema(path)


def _write(tmp_path, columns: dict, name="data.parquet"):
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def schema():
    return schema_from_dict({"labels": LABELS, "sparse": ["s"], "dense": ["x"]})


def _good(n=4):
    return {**{e: [0, 1] * (n // 2) for e in LABELS}, "s": ["a", "b"] * (n // 2), "x": [1.0, 2.0] * (n // 2)}


def test_data_missing_a_declared_column(tmp_path, schema):
    columns = _good()
    del columns["x"]
    with pytest.raises(DataError, match=r"lacks column\(s\) \['x'\]"):
        read_table(_write(tmp_path, columns), schema)


def test_non_numeric_dense_value(tmp_path, schema):
    path = tmp_path / "data.csv"
    path.write_text(",".join([*LABELS, "s", "x"]) + "\n" + ",".join(["1"] * len(LABELS) + ["a", "abc"]) + "\n")
    with pytest.raises(DataError, match="non-numeric value 'abc'"):
        read_table(path, schema)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0.0, float("nan"), 1.0, 0.0], "has 1 missing/NaN"),
        ([0, None, 1, 0], "has 1 missing/NaN"),  # a null, counted once (not also as the NaN it reads as)
        ([None, float("nan"), 1.0, 0.0], "has 2 missing/NaN"),
        ([0, 2, 1, 0], "binary"),
    ],
)
def test_bad_labels(tmp_path, schema, labels, message):
    columns = {**_good(), LABELS[0]: labels}
    with pytest.raises(DataError, match=message):
        read_table(_write(tmp_path, columns), schema)


def test_empty_and_corrupt_files(tmp_path, schema):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_table(tmp_path / "empty.csv", schema)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match="not readable Parquet"):
        read_table(tmp_path / "bad.parquet", schema)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join([*LABELS, "s", "x"]) + "\n")
    with pytest.raises(DataError, match="no rows"):
        read_table(header_only, schema)


def test_bad_data_writes_no_training_dir(tmp_path, schema):
    columns = {**_good(), LABELS[0]: [0, 3, 1, 0]}
    bad = _write(tmp_path, columns)
    with pytest.raises(DataError):
        train(bad, bad, tmp_path / "run", config_from_dict({}), schema, show_progress=False)
    assert not (tmp_path / "run").exists()


def test_bad_training_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown training option"):
        load_config(None, ["learning_rate=0.1"])
    with pytest.raises(ConfigError, match="must be int"):
        load_config(None, ["batch_size=big"])
    with pytest.raises(ConfigError, match="must be > 0"):
        load_config(None, ["lr=0"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["lr"])
    with pytest.raises(ConfigError, match="must be float"):
        load_config(None, ["lr=fast"])
    assert load_config(None, ["lr=1e-3"]).lr == 0.001  # YAML 1.1 reads 1e-3 as a string; still a float here


def test_checkpoint_from_a_different_schema_is_refused(trained, tiny_schema):
    run, _ = trained
    other = schema_from_dict({**tiny_schema.to_dict(), "dense": [{"name": "price", "transform": "log"}]})
    with pytest.raises(CheckpointError, match=r"different feature schema than the one given \(--features"):
        load_trained(run, other)


def test_corrupt_or_missing_checkpoint(tmp_path, tiny_schema):
    with pytest.raises(CheckpointError, match="not found"):
        load_trained(tmp_path, tiny_schema)
    (tmp_path / "best.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_trained(tmp_path, tiny_schema)


def test_existing_run_is_not_overwritten(trained, tiny_schema, tiny_files):
    run, _ = trained
    before = (run / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        train(*tiny_files, run, config_from_dict({}), tiny_schema, show_progress=False)
    assert (run / "last.pt").read_bytes() == before


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "features.yaml"
    bad.write_text("labels: []\n")
    code = main(["--features", str(bad), "synth", "--rows", "10", "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_a_non_finite_dense_value_is_an_error_not_a_nan_model(tmp_path, schema, value):
    columns = {**_good(), "x": [1.0, value, 2.0, 3.0]}
    with pytest.raises(DataError, match=r"non-finite value -?inf \(row 1\)"):
        read_table(_write(tmp_path, columns), schema)
    path = tmp_path / "data.csv"
    path.write_text(",".join([*LABELS, "s", "x"]) + "\n" + ",".join(["1"] * len(LABELS) + ["a", "inf"]) + "\n")
    with pytest.raises(DataError, match="non-finite"):
        read_table(path, schema)


def test_nan_and_empty_dense_cells_are_missing_values(tmp_path, schema):
    columns = {**_good(), "x": [1.0, float("nan"), None, 3.0]}
    assert read_table(_write(tmp_path, columns), schema).num_rows == 4


@pytest.mark.parametrize("rows", [1, 4])
def test_a_valid_split_without_both_classes_is_refused(tmp_path, schema, rows):
    train_file = _write(tmp_path, _good(8), "train.parquet")
    one_class = {**{e: [0] * rows for e in LABELS}, "s": ["a"] * rows, "x": [1.0] * rows}
    valid_file = _write(tmp_path, one_class, "valid.parquet")
    with pytest.raises(DataError, match="no positive label .* both classes"):
        train(train_file, valid_file, tmp_path / "run", config_from_dict({}), schema, show_progress=False)
    assert not (tmp_path / "run").exists()


def test_resuming_with_another_train_file_is_refused(tmp_path, tiny_schema, tiny_files):
    run = tmp_path / "run"
    config = config_from_dict({"epochs": 2, "batch_size": 256, "warmup_steps": 2})
    with pytest.raises(Interrupted):
        train(*tiny_files, run, config, tiny_schema, show_progress=False, stop_after=2)
    other = tmp_path / "other.parquet"
    pq.write_table(pq.read_table(tiny_files[0]).slice(0, 2000), other)
    before = (run / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="not the one this run started with"):
        train(other, tiny_files[1], run, config, tiny_schema, resume=True, show_progress=False)
    assert (run / "last.pt").read_bytes() == before


def test_out_that_is_a_file_and_bad_override_yaml_are_one_line_errors(tmp_path, tiny_schema, tiny_files, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a directory\n")
    with pytest.raises(ConfigError, match="is a file"):
        train(*tiny_files, taken, config_from_dict({}), tiny_schema, show_progress=False)
    assert taken.read_text() == "not a directory\n"
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, ["lr=[0.1"])
    args = ["train", "--train", str(tiny_files[0]), "--valid", str(tiny_files[1]), "--out", str(tmp_path / "r")]
    assert main([*args, "lr=[0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not (tmp_path / "r").exists()


def test_export_to_a_directory_is_refused_and_a_failed_export_keeps_the_old_artifact(
    trained, tiny_schema, tmp_path, monkeypatch
):
    from criteo_ctr import export as export_module

    run, _ = trained
    with pytest.raises(ModelError, match="is a directory"):
        export_module.export(run, tmp_path, tiny_schema, latency_batches=(1,), repeats=1)
    artifact = tmp_path / "model.pt2"
    export_module.export(run, artifact, tiny_schema, latency_batches=(1,), repeats=1)
    good = artifact.read_bytes()
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)  # every parity check now fails
    with pytest.raises(ModelError, match="differs from eager"):
        export_module.export(run, artifact, tiny_schema, latency_batches=(1,), repeats=1)
    assert artifact.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]


def test_empty_strings_and_nulls_encode_the_same_for_every_encoding(tmp_path):
    from criteo_ctr.preprocess import MISSING, Preprocessor

    schema = schema_from_dict(
        {
            "labels": LABELS,
            "sparse": ["v", {"name": "h", "encoding": "hash", "buckets": 8}],
            "multi_hot": [{"name": "m", "max_length": 3}],
        }
    )
    rows = {**{e: [0, 1, 0, 1] for e in LABELS}, "v": ["a", "", None, "b"], "h": ["x", "", None, "y"]}
    rows["m"] = ["p|q", "", None, "q"]
    from_parquet = read_table(_write(tmp_path, rows), schema)
    csv = tmp_path / "data.csv"
    header = [*LABELS, "v", "h", "m"]
    body = [[str(rows[c][i]) if rows[c][i] is not None else "" for c in header] for i in range(4)]
    csv.write_text("\n".join(",".join(r) for r in [header, *body]) + "\n")
    from_csv = read_table(csv, schema)
    pre = Preprocessor.fit(from_parquet, schema)
    a, b = pre.transform(from_parquet), pre.transform(from_csv)
    assert a.sparse.tolist() == b.sparse.tolist() and a.multi_hot[0].tolist() == b.multi_hot[0].tolist()
    assert a.sparse[1].tolist() == [MISSING, MISSING] and a.sparse[2].tolist() == [MISSING, MISSING]


def test_a_header_less_file_without_file_columns_points_at_file_columns(tmp_path):
    schema = schema_from_dict({"labels": LABELS, "sparse": ["c"], "dense": ["i"]})
    path = tmp_path / "data.tsv"  # the file's real order: labels, i (numeric), c (hex ids)
    path.write_text("".join("\t".join(["1"] * len(LABELS) + [str(k), f"a{k}f"]) + "\n" for k in range(4)))
    with pytest.raises(DataError, match="declare file_columns"):
        read_table(path, schema)


def test_declaring_file_columns_keeps_earlier_checkpoints_usable(trained, tiny_schema):
    run, _ = trained
    laid_out = schema_from_dict({**tiny_schema.to_dict(), "file_columns": list(reversed(tiny_schema.columns))})
    model, _, _ = load_trained(run, laid_out)  # a change of file layout only: the model still loads
    assert model is not None


def test_resume_with_nothing_to_resume_says_so(tmp_path, schema):
    good = _write(tmp_path, _good())
    with pytest.raises(ConfigError, match="holds no training run to continue; train without --resume first"):
        train(good, good, tmp_path / "run", config_from_dict({}), schema, resume=True, show_progress=False)


def test_synth_checks_its_out_path_before_it_makes_the_rows(tmp_path, capsys, monkeypatch):
    import criteo_ctr.synth as synth_module

    monkeypatch.setattr(synth_module, "synthesize", lambda *a, **k: pytest.fail("rows made before --out was checked"))
    assert main(["synth", "--rows", "10", "--out", str(tmp_path)]) == 2  # was: "unknown format ''"
    assert f"it is a directory; give a file path, e.g. {tmp_path}/train.parquet" in capsys.readouterr().err
    assert main(["synth", "--rows", "10", "--out", str(tmp_path / "x.json")]) == 2
    assert "unknown format '.json'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["synth", "--rows", "10", "--out", "OUT/x.parquet", "--seed", "-1"], "--seed >= 0, got --rows 10 --seed -1"),
        (["export", "--checkpoint", "OUT", "--out", "OUT/m.pt2", "--repeats", "0"], "--repeats at least 1"),
        (["export", "--checkpoint", "OUT", "--out", "OUT/m.pt2", "--batches", "0,64"], "sizes of 1 or more"),
        (["export", "--checkpoint", "OUT", "--out", "OUT/m.pt2", "--batches", "a,b"], "got --batches 'a,b'"),
    ],
)
def test_numbers_a_command_cannot_use_are_one_line(tmp_path, capsys, args, message):
    assert main([a.replace("OUT", str(tmp_path)) for a in args]) == 2  # --seed -1 and --repeats 0 were tracebacks
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not any(tmp_path.iterdir())


def test_an_output_under_a_file_is_one_clear_error_and_the_file_stays(tmp_path, schema, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("mine\n")
    good = _write(tmp_path, _good())
    with pytest.raises(ConfigError, match=f"--out {blocker / 'run'}: {blocker} is a file, not a folder"):
        train(good, good, blocker / "run", config_from_dict({}), schema, show_progress=False)
    assert main(["synth", "--rows", "10", "--out", str(blocker / "deeper" / "x.parquet")]) == 2
    assert f"cannot write {blocker / 'deeper' / 'x.parquet'}: {blocker} is a file" in capsys.readouterr().err
    assert blocker.read_text() == "mine\n"
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "gone")  # a broken link where the folder goes
    assert main(["synth", "--rows", "10", "--out", str(dangling / "x.parquet")]) == 2
    assert f"{dangling} is a broken link, not a folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=f"--out {dangling / 'run'}: {dangling} is a broken link, not a folder"):
        train(tmp_path / "unread.parquet", good, dangling / "run", config_from_dict({}), schema, show_progress=False)
