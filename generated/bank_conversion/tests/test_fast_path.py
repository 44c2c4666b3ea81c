"""The fast path: fused tables, row-sparse Adam, CowClip, the data cache, batch scaling, background checkpoints,
phase timings, torchrun (template-owned)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from bank_conversion import eager_optim
from bank_conversion.cache import encode_file, entry_dir
from bank_conversion.checkpoint import BEST, BackgroundWriter, load_trained
from bank_conversion.config import config_from_dict
from bank_conversion.errors import CheckpointError, ConfigError
from bank_conversion.large_batch import BatchScaling, batch_scaling
from bank_conversion.modules.embedding import SparseArch
from bank_conversion.optim import RowSparseAdam, cow_clip, frequency_decay_scale
from bank_conversion.spec import SPEC
from bank_conversion.train import train


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.0, 0.99)])  # Adam's defaults; no momentum (embedding_beta1=0)
def test_row_sparse_adam_equals_sparse_adam(betas):
    torch.manual_seed(0)
    ours, reference = torch.nn.Embedding(50, 4, sparse=True), torch.nn.Embedding(50, 4, sparse=True)
    reference.load_state_dict(ours.state_dict())
    opts = [RowSparseAdam(ours.parameters(), lr=0.05, betas=betas)]
    opts.append(torch.optim.SparseAdam(reference.parameters(), lr=0.05, betas=betas))
    for _ in range(6):
        ids = torch.randint(0, 20, (64,))  # duplicates, and rows 20.. never touched
        for table, opt in zip((ours, reference), opts):
            opt.zero_grad()
            (table(ids) * torch.linspace(-1, 1, 4)).square().sum().backward()
            opt.step()
    assert torch.allclose(ours.weight, reference.weight, atol=1e-6)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.allclose(opts[0].state[ours.weight][key], opts[1].state[reference.weight][key], atol=1e-7)
    opts[1].load_state_dict(opts[0].state_dict())  # same state layout both ways


@pytest.mark.parametrize("name", ["AdamW", "Adam"])
def test_eager_optimizers_step_as_torchs_own_and_share_its_state_layout(name):
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    theirs.load_state_dict(ours.state_dict())
    settings = {"lr": 0.05, "weight_decay": 0.1}
    pairs = [(eager_optim, ours), (torch.optim, theirs)]
    opts = [getattr(module, name)(layer.parameters(), **settings) for module, layer in pairs]
    for _ in range(5):
        x = torch.randn(16, 6)
        for layer, opt in zip((ours, theirs), opts):
            opt.zero_grad()
            layer(x).square().mean().backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))  # bit for bit
    opts[1].load_state_dict(opts[0].state_dict())
    opts[0].load_state_dict(opts[1].state_dict())
    assert torch.equal(opts[0].state_dict()["state"][0]["exp_avg_sq"], opts[1].state[theirs.weight]["exp_avg_sq"])


NO_DYNAMO = """
import json, sys
from bank_conversion.config import config_from_dict
from bank_conversion.schema import schema_from_dict
from bank_conversion.train import train
train_path, valid_path, out, schema = sys.argv[1], sys.argv[2], sys.argv[3], schema_from_dict(json.loads(sys.argv[4]))
config = config_from_dict({"epochs": 1, "batch_size": 512, "data_cache": False})
train(train_path, valid_path, out, config, schema, show_progress=False)
train(train_path, valid_path, out, config, schema, resume=True, show_progress=False)  # loads both optimizers
print(json.dumps(sorted(module for module in sys.modules if module.startswith("torch._dynamo"))))
"""


def test_training_on_cpu_never_imports_dynamo(tmp_path, tiny_schema, tiny_files, fresh_python):
    """torch.optim's optimizers import ``torch._dynamo`` on first use (about 1 s a process); ``eager_optim``'s
    and RowSparseAdam do not, through a run, its checkpoints and its resume."""
    args = [*map(str, tiny_files), str(tmp_path / "run"), json.dumps(tiny_schema.to_dict())]
    proc = fresh_python("-c", NO_DYNAMO, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []


WARM_CACHE_RUN = """
import json, sys
from bank_conversion.config import config_from_dict
from bank_conversion.schema import schema_from_dict
from bank_conversion.train import train
train_path, valid_path, out, schema = sys.argv[1], sys.argv[2], sys.argv[3], schema_from_dict(json.loads(sys.argv[4]))
config = config_from_dict({"epochs": 1, "batch_size": 512})
summary = train(train_path, valid_path, out, config, schema, show_progress=False)
arrow = sorted(m for m in sys.modules if m.split(".")[0] == "pyarrow")[:1]
print(json.dumps([summary["valid"], "read" in summary["phases"], arrow]))
"""


def test_a_warm_cache_train_never_imports_pyarrow(tmp_path, tiny_schema, tiny_files, fresh_python):
    """Reading and encoding a file needs pyarrow (about 0.1 s to import); a run whose train and valid files are
    both in the data cache reads neither, and trains the same model."""
    runs = []
    for run in ("cold", "warm"):
        args = [*map(str, tiny_files), str(tmp_path / run), json.dumps(tiny_schema.to_dict())]
        proc = fresh_python("-c", WARM_CACHE_RUN, *args, SMT_DATA_CACHE=str(tmp_path / "c"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.splitlines()[-1]))
    (cold_valid, cold_read, cold_arrow), (warm_valid, warm_read, warm_arrow) = runs
    assert (cold_read, cold_arrow) == (True, ["pyarrow"])  # the test can tell
    assert (warm_read, warm_arrow) == (False, [])
    for event, metrics in cold_valid.items():
        assert warm_valid[event]["ne"] == pytest.approx(metrics["ne"], rel=1e-6)


def test_row_sparse_adam_weight_decay_shrinks_only_the_rows_of_the_batch():
    table = torch.nn.Embedding(10, 4, sparse=True)
    torch.nn.init.constant_(table.weight, 1.0)
    opt = RowSparseAdam(table.parameters(), lr=0.1, weight_decay=0.5)
    (table(torch.tensor([2])) * 0).sum().backward()  # zero loss gradient: only the decay acts
    opt.step()
    assert (table.weight[2] < 1.0).all() and torch.equal(table.weight[3], torch.ones(4))


def test_frequency_scaled_decay_shrinks_a_frequent_row_less_per_step_than_a_rare_one():
    table = torch.nn.Embedding(4, 2, sparse=True)
    torch.nn.init.constant_(table.weight, 1.0)
    opt = RowSparseAdam(table.parameters(), lr=0.01, betas=(0.0, 0.9), weight_decay=1.0, decay_by_frequency=True)
    for step in range(1, 4):  # row 1 in every batch, row 2 only in the last one
        ids = torch.tensor([1, 2]) if step == 3 else torch.tensor([1])
        before = table.weight.detach().clone()
        (table(ids) * 0).sum().backward()  # zero loss gradient: only the decay acts
        opt.step()
        opt.zero_grad()
    state = opt.state[table.weight]
    assert state["occurrences"].tolist() == [0.0, 3.0, 1.0, 0.0]
    # beta1 = 0: the first moment is the last step's gradient, decay · (count / occurrences so far) · row
    assert torch.allclose(state["exp_avg"][1], before[1] / 3) and torch.allclose(state["exp_avg"][2], before[2])
    assert torch.equal(table.weight[0], torch.ones(2)) and (table.weight[2] < 1.0).all()
    assert frequency_decay_scale(torch.tensor([2.0]), torch.tensor([8.0])).item() == 0.25
    reference = RowSparseAdam(torch.nn.Embedding(4, 2, sparse=True).parameters(), lr=0.01)
    reference.load_state_dict(opt.state_dict())  # the extra state survives a checkpoint round trip
    assert reference.state[reference.param_groups[0]["params"][0]]["occurrences"][1].item() == 3.0


def test_frequency_scaled_decay_is_refused_with_dense_embedding_gradients():
    from bank_conversion.config import TrainConfig
    from bank_conversion.model import FeatureSizes, RankingModel
    from bank_conversion.optimizers import build_optimizers

    config = TrainConfig(embedding_weight_decay=1e-3, embedding_decay_scaling="frequency")
    model = RankingModel(SPEC, FeatureSizes((40, 3), (), 2))
    with pytest.raises(ConfigError, match="embedding_decay_scaling=frequency needs sparse"):
        build_optimizers(model, config, sparse_gradients=False)
    with pytest.raises(ConfigError, match="embedding_decay_scaling must be none or frequency"):
        config_from_dict({"embedding_decay_scaling": "often"})


def test_embedding_weight_decay_leaves_qr_remainder_rows_alone():
    from bank_conversion.config import TrainConfig
    from bank_conversion.model import FeatureSizes, RankingModel
    from bank_conversion.optimizers import build_optimizers

    spec = dataclasses.replace(SPEC, qr_collisions=4, qr_min_rows=8)
    model = RankingModel(spec, FeatureSizes((40, 3), (), 2))
    arch = model.sparse_arch
    assert arch.qr_features == [0]
    remainder = slice(int(arch.offsets[2]), int(arch.offsets[2]) + arch.slot_rows[2])
    for sparse_gradients in (True, False):
        config = TrainConfig(embedding_weight_decay=0.5, embedding_lr=0.1)
        opt = build_optimizers(model, config, sparse_gradients).embedding
        quotient = int(arch.offsets[0]) + 1
        with torch.no_grad():
            arch.table.weight[quotient] = 1.0  # Adam's first step moves a decaying row by lr: 1.0 → 0.9
        before = arch.table.weight.detach().clone()
        ids = torch.tensor([[5, 1], [13, 2]])  # quotient rows 1 and 3 of feature 0, remainder rows 1 and 1
        (arch(ids, []) * 0).sum().backward()  # zero loss gradient: only the decay acts
        opt.step()
        opt.zero_grad()
        after = arch.table.weight.detach()
        assert torch.equal(after[remainder], before[remainder])  # remainder rows: no decay
        assert (after[quotient] < before[quotient]).all()  # quotient rows still decay


def test_embedding_decay_can_leave_multi_hot_bags_alone():
    from bank_conversion.config import TrainConfig
    from bank_conversion.model import FeatureSizes, RankingModel
    from bank_conversion.optimizers import build_optimizers

    sparse, bags = torch.tensor([[1], [2]]), [torch.tensor([[1, 2], [3, 0]])]
    for multi_hot in (True, False):
        for sparse_gradients in (True, False):
            model = RankingModel(SPEC, FeatureSizes((6,), (5,), 0))
            arch = model.sparse_arch
            config = TrainConfig(embedding_weight_decay=0.5, embedding_lr=0.1, embedding_decay_multi_hot=multi_hot)
            opt = build_optimizers(model, config, sparse_gradients).embedding
            before_table, before_bag = arch.table.weight.detach().clone(), arch.bags[0].weight.detach().clone()
            (arch(sparse, bags) * 0).sum().backward()  # zero loss gradient: only the decay acts
            opt.step()
            moved_table = (arch.table.weight.detach() != before_table).any(dim=1)
            moved_bag = (arch.bags[0].weight.detach() != before_bag).any(dim=1)
            assert moved_table[1:3].all()  # single-valued rows of the batch decay either way
            assert bool(moved_bag[1:4].all()) if multi_hot else not moved_bag.any()
    with pytest.raises(ConfigError, match="embedding_decay_multi_hot"):
        config_from_dict({"embedding_decay_multi_hot": "no"})


def test_embedding_betas_reach_the_embedding_optimizer_and_default_to_adams():
    from bank_conversion.config import TrainConfig
    from bank_conversion.model import FeatureSizes, RankingModel
    from bank_conversion.optimizers import build_optimizers

    for sparse_gradients in (True, False):
        model = RankingModel(SPEC, FeatureSizes((6,), (), 0))
        default = build_optimizers(model, TrainConfig(), sparse_gradients)
        assert default.embedding.param_groups[0]["betas"] == (0.9, 0.999)  # torch's Adam's, as before the option
        chosen = build_optimizers(model, TrainConfig(embedding_beta1=0.0, embedding_beta2=0.99), sparse_gradients)
        assert chosen.embedding.param_groups[0]["betas"] == (0.0, 0.99)
        assert chosen.dense.param_groups[0]["betas"] == default.dense.param_groups[0]["betas"]  # dense: untouched
    for key, bad in (("embedding_beta1", 1.0), ("embedding_beta2", -0.1)):
        with pytest.raises(ConfigError, match=f"{key} must be in"):
            config_from_dict({key: bad})


def test_fused_table_serves_every_feature_from_its_own_rows():
    arch = SparseArch([3, 5, 2], [], dim=4)
    ids = torch.tensor([[2, 4, 1]])
    out = arch(ids, [])
    for i in range(3):
        assert torch.equal(out[0, i], arch.feature_table(i)[ids[0, i]])


def test_fused_table_loads_a_checkpoint_with_one_table_per_feature():
    per_feature = {"tables.0.weight": torch.randn(3, 4), "tables.1.weight": torch.randn(5, 4)}
    arch = SparseArch([3, 5], [], dim=4)
    arch.load_state_dict(dict(per_feature))
    assert torch.equal(arch.feature_table(1), per_feature["tables.1.weight"])


def test_cache_hits_and_is_invalidated_by_data_and_schema(tmp_path, tiny_schema, tiny_files):
    train_file = tmp_path / "train.parquet"
    shutil.copy(tiny_files[0], train_file)
    pre, first = encode_file(train_file, tiny_schema)
    entries = list(entry_dir(train_file).glob("*.pt"))
    assert len(entries) == 1 and not (tmp_path / ".smt-cache").exists()  # nothing written beside the data
    pre_again, second = encode_file(train_file, tiny_schema)
    assert pre_again.state == pre.state and torch.equal(first.sparse, second.sparse)
    assert torch.equal(first.dense, second.dense) and torch.equal(first.labels, second.labels)
    entries[0].write_bytes(b"truncated")  # a corrupt entry is ignored and rebuilt
    _, rebuilt = encode_file(train_file, tiny_schema)
    assert torch.equal(rebuilt.sparse, first.sparse)
    os.utime(train_file, ns=(1, 1))  # the data changed (mtime): a new entry
    encode_file(train_file, tiny_schema)
    other = tiny_schema.to_dict()
    other["dense"][1]["transform"] = "none"
    from bank_conversion.schema import schema_from_dict

    encode_file(train_file, schema_from_dict(other))  # the schema changed: a new entry
    assert len(list(entry_dir(train_file).glob("*.pt"))) == 3


def test_a_valid_entry_is_hit_whether_the_state_was_fit_cached_or_resumed(tmp_path, tiny_schema, tiny_files):
    from bank_conversion.preprocess import Preprocessor

    train_file, valid_file = (Path(shutil.copy(f, tmp_path / Path(f).name)) for f in tiny_files)
    fitted, _ = encode_file(train_file, tiny_schema)  # a cold cache: fit here
    cached, _ = encode_file(train_file, tiny_schema)  # read back with the entry's JSON text
    resumed = Preprocessor(tiny_schema, json.loads(fitted.state_json))  # as --resume builds it from last.pt
    assert cached._state is None  # a warm cache gives the text and the table sizes: nothing is decoded
    assert cached.cardinalities() == fitted.cardinalities() and cached._state is None
    assert cached.state_json == fitted.state_json == resumed.state_json and cached.state == fitted.state
    first = encode_file(valid_file, tiny_schema, fitted)[1]
    for pre in (cached, resumed):
        assert torch.equal(encode_file(valid_file, tiny_schema, pre)[1].sparse, first.sparse)
    assert len(list(entry_dir(valid_file).glob("*.pt"))) == 1  # one key for the one state: hit every time
    assert len(list(entry_dir(train_file).glob("*.pt"))) == 1


def test_a_cache_entry_whose_fitted_state_was_altered_is_rebuilt(tmp_path, tiny_schema, tiny_files, capsys):
    train_file = Path(shutil.copy(tiny_files[0], tmp_path / "train.parquet"))
    fitted, first = encode_file(train_file, tiny_schema)
    [entry] = entry_dir(train_file).glob("*.pt")
    payload = torch.load(entry, weights_only=True)
    word = next(iter(fitted.state["vocab"].values()))[0]
    payload["state_json"] = payload["state_json"].replace(f'"{word}"', f'"{word}x"', 1)  # still valid JSON
    torch.save(payload, entry)
    again, second = encode_file(train_file, tiny_schema)
    assert "ignoring unreadable cache entry" in capsys.readouterr().err
    assert again.state == fitted.state and torch.equal(second.sparse, first.sparse)
    assert encode_file(train_file, tiny_schema)[0].state_json == fitted.state_json  # rebuilt: a hit again


def test_cached_and_uncached_training_agree(tmp_path, tiny_schema, tiny_files):
    config = {"epochs": 1, "batch_size": 512, "warmup_steps": 2}
    cached = train(*tiny_files, tmp_path / "a", config_from_dict(config), tiny_schema, show_progress=False)
    plain = config_from_dict({**config, "data_cache": False})
    uncached = train(*tiny_files, tmp_path / "b", plain, tiny_schema, show_progress=False)
    assert cached["valid"] == uncached["valid"]


def test_predict_keeps_batches_on_the_device_and_matches_one_forward_pass(trained, tiny_schema, tiny_files):
    from bank_conversion.checkpoint import load_trained
    from bank_conversion.data import read_table
    from bank_conversion.predict import predict

    model, _, pre = load_trained(trained[0], tiny_schema)
    valid = pre.transform(read_table(tiny_files[1], tiny_schema))
    model.eval()
    with torch.no_grad():
        whole = torch.sigmoid(model(valid.sparse, valid.dense, valid.multi_hot).float()).numpy()  # (N, E)
    batched = predict(model, valid, batch_size=97)  # 97 does not divide N: a short last batch
    assert batched.shape == whole.shape == (len(valid), len(SPEC.events))
    assert abs(batched - whole).max() < 1e-6


def test_large_batch_scaling_rules():
    def rule(name: str) -> BatchScaling:
        return batch_scaling(config_from_dict({"batch_size": 2048, "lr_scaling": name, "warmup_steps": 100}))

    assert rule("none") == BatchScaling(1.0, 1.0, 1.0, 100)
    assert rule("linear") == BatchScaling(4.0, 4.0, 1.0, 100)
    assert rule("sqrt") == BatchScaling(2.0, 2.0, 1.0, 100)
    assert rule("cowclip") == BatchScaling(2.0, 1.0, 4.0, 25)  # warmup over the same examples
    assert rule("auto") == rule("cowclip")  # the default above the tuned batch
    at_reference = config_from_dict({"batch_size": 512, "reference_batch_size": 512, "warmup_steps": 100})
    assert batch_scaling(at_reference) == BatchScaling(1.0, 1.0, 1.0, 100)  # nothing moves at the tuned batch
    smaller = config_from_dict({"batch_size": 128, "reference_batch_size": 512, "warmup_steps": 100})
    assert batch_scaling(smaller) == BatchScaling(1.0, 1.0, 1.0, 100)
    with pytest.raises(ConfigError, match="lr_scaling"):
        config_from_dict({"lr_scaling": "cubic"})


def test_lrs_peak_at_the_critical_batch_while_l2_and_warmup_follow_the_batch():
    def scaling(batch: int, critical: int, rule: str = "auto", above: str = "flat") -> BatchScaling:
        options = {"batch_size": batch, "reference_batch_size": 512, "critical_batch_size": critical}
        config = {**options, "lr_scaling": rule, "warmup_steps": 100, "lr_above_critical": above}
        return batch_scaling(config_from_dict(config))

    for above in ("flat", "fall"):  # at and below the critical batch nothing changes
        assert scaling(4096, 4096, above=above) == scaling(4096, 0, above=above)
        assert scaling(2048, 4096, above=above) == BatchScaling(2.0, 1.0, 4.0, 25)
    assert scaling(65536, 4096) == BatchScaling(math.sqrt(8), 1.0, 128.0, 1)  # the lr of 4,096, L2 and warmup of 65,536
    assert scaling(65536, 0) == BatchScaling(math.sqrt(128), 1.0, 128.0, 1)  # 0 = no ceiling
    assert scaling(65536, 4096, "linear") == BatchScaling(8.0, 8.0, 1.0, 100)
    assert scaling(65536, 4096, "sqrt") == BatchScaling(math.sqrt(8), math.sqrt(8), 1.0, 100)
    assert scaling(65536, 256) == BatchScaling(1.0, 1.0, 128.0, 1)  # a ceiling below the tuned batch never shrinks
    with pytest.raises(ConfigError, match="critical_batch_size must be >= 0"):
        config_from_dict({"critical_batch_size": -1})


def test_lrs_fall_above_the_critical_batch_by_the_surge_curve():
    def scaling(batch: int, rule: str = "auto", critical: int = 4096) -> BatchScaling:
        options = {"batch_size": batch, "reference_batch_size": 512, "critical_batch_size": critical}
        return batch_scaling(config_from_dict({**options, "lr_scaling": rule, "warmup_steps": 100}))

    assert config_from_dict({}).lr_above_critical == "fall"  # the default
    peak = math.sqrt(8)  # the dense lr multiplier at 4,096
    assert scaling(4096).dense_lr == peak
    assert scaling(16384).dense_lr == pytest.approx(peak * 2 / (0.5 + 2))  # 4x the critical batch: x0.8
    assert scaling(65536) == BatchScaling(pytest.approx(peak * 2 / (0.25 + 4)), 1.0, 128.0, 1)  # 16x: x0.47
    falls = [scaling(b).dense_lr for b in (4096, 8192, 16384, 65536, 131072, 1 << 20)]
    assert falls == sorted(falls, reverse=True)  # it only falls, and stays positive
    assert falls[-1] > 0
    assert scaling(65536, "linear") == BatchScaling(*[pytest.approx(8 * 2 / 4.25)] * 2, 1.0, 100)
    assert scaling(65536, "sqrt").embedding_lr == pytest.approx(peak * 2 / 4.25)
    assert scaling(65536, critical=0).dense_lr == math.sqrt(128)  # no critical batch: nothing falls
    with pytest.raises(ConfigError, match="lr_above_critical must be fall or flat"):
        config_from_dict({"lr_above_critical": "down"})


def test_cow_clip_caps_each_row_at_its_count_times_its_weight_norm():
    grad = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])  # norms 5, 0.5, 0
    weights = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    clipped = cow_clip(grad, weights, torch.tensor([2.0, 1.0, 1.0]), ratio=1.0, floor=1e-3)
    assert torch.allclose(clipped[0].norm(), torch.tensor(2.0))  # 2 occurrences x |w| = 1
    assert torch.allclose(clipped[0] / clipped[0].norm(), grad[0] / 5)  # direction kept
    assert torch.equal(clipped[1], grad[1]) and torch.equal(clipped[2], grad[2])  # under the limit: untouched
    floored = cow_clip(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([1.0]), ratio=1.0, floor=0.1)
    assert torch.allclose(floored, torch.tensor([[0.1, 0.0]]))  # a zero row still moves: zeta bounds the limit


def test_row_sparse_adam_clips_per_example_occurrences():
    torch.manual_seed(0)
    clipped, plain = torch.nn.Embedding(20, 4, sparse=True), torch.nn.Embedding(20, 4, sparse=True)
    plain.load_state_dict(clipped.state_dict())
    loose = RowSparseAdam(plain.parameters(), lr=0.05)
    tight = RowSparseAdam(clipped.parameters(), lr=0.05, clip_ratio=1e-6, clip_min=1e-6)
    ids = torch.tensor([1, 1, 1, 2, 5])
    for table, opt in ((plain, loose), (clipped, tight)):
        for group in opt.param_groups:
            group["batch_rows"] = len(ids)
        opt.zero_grad()
        (table(ids) * 100).sum().backward()
        grad = table.weight.grad.coalesce()
        opt.step()
    # The first Adam step moves a row by ~lr whatever its gradient's scale: compare the second moments instead.
    ratio = tight.state[clipped.weight]["exp_avg_sq"][1] / loose.state[plain.weight]["exp_avg_sq"][1]
    assert (ratio < 1e-6).all() and grad.values().abs().max() > 1


def test_embedding_clip_needs_sparse_gradients():
    from bank_conversion.model import FeatureSizes, RankingModel
    from bank_conversion.optimizers import build_optimizers

    model = RankingModel(SPEC, FeatureSizes((40, 3), (), 2))
    with pytest.raises(ConfigError, match="embedding_clip needs sparse"):
        build_optimizers(model, config_from_dict({"embedding_clip": 1.0}), sparse_gradients=False)


def test_background_checkpoints_are_snapshots_written_in_order(tmp_path):
    writer = BackgroundWriter()
    state = {"meta": {"note": "kept as given"}, "w": torch.zeros(3)}
    writer.save(state, tmp_path / "a.pt")
    state["w"].add_(1.0)  # the optimizer changes the live tensor at once: the file holds the snapshot
    writer.save(state, tmp_path / "b.pt")
    writer.save({"w": torch.full((3,), 7.0)}, tmp_path / "a.pt")  # the later write of a.pt wins
    writer.wait()
    assert torch.equal(torch.load(tmp_path / "b.pt")["w"], torch.ones(3))
    assert torch.equal(torch.load(tmp_path / "a.pt")["w"], torch.full((3,), 7.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]  # no temp file left


class _Gate:
    """A payload value whose pickling (inside torch.save, on the writer's thread) waits until the test opens it."""

    def __init__(self):
        self.reached, self.opened = threading.Event(), threading.Event()

    def __reduce__(self):
        self.reached.set()
        assert self.opened.wait(30)
        return (int, (0,))


def test_a_cancelled_background_write_leaves_the_file_it_was_replacing(tmp_path):
    writer, target = BackgroundWriter(), tmp_path / "last.pt"
    writer.save({"w": torch.zeros(3)}, target)
    writer.wait()
    gate = _Gate()
    writer.save({"w": torch.ones(1 << 20), "gate": gate}, target)  # 4 MB: more than one chunk
    assert gate.reached.wait(30)  # in flight: its temp file is open
    writer.cancel(tmp_path / "best.pt")  # another file: no effect
    writer.cancel(target)
    gate.opened.set()
    writer.wait()  # a cancelled write is no error
    assert torch.equal(torch.load(target)["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # its temp file is gone
    writer.save({"w": torch.full((3,), 2.0)}, target)  # the next write is not cancelled
    writer.cancel(tmp_path / "best.pt")
    writer.wait()
    assert torch.equal(torch.load(target)["w"], torch.full((3,), 2.0))


def test_a_runs_end_does_not_wait_for_the_last_pt_it_supersedes(tmp_path, tiny_schema, tiny_files, monkeypatch):
    """The epoch-end write of last.pt is still in flight (here: until cancelled) when the last epoch ends: the run
    cancels it and writes the final one, instead of waiting for it."""
    from bank_conversion import checkpoint

    write, held = checkpoint._write, []

    def slow_disk(payload, path, stop=None):
        if path.name == "last.pt" and stop is not None and not payload["progress"]["done"]:
            held.append(stop.wait(60))  # a disk that takes a minute, unless the write is cancelled
        write(payload, path, stop)

    monkeypatch.setattr(checkpoint, "_write", slow_disk)
    config = config_from_dict({"epochs": 2, "batch_size": 512, "warmup_steps": 2})
    summary = train(*tiny_files, tmp_path / "run", config, tiny_schema, show_progress=False)
    assert held == [True]  # epoch 1's last.pt was cancelled, not waited for
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["progress"]["done"] and last["progress"]["step"] == summary["steps"]
    assert (tmp_path / "run" / BEST).is_file()


def test_a_failed_background_checkpoint_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    writer = BackgroundWriter()
    writer.save({"w": torch.zeros(1)}, blocker / "last.pt")  # its parent is a file: the write fails
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        writer.wait()
    writer.wait()  # reported once


def test_checkpoints_keep_preprocessing_as_json_and_older_ones_load(tmp_path, trained, tiny_schema):
    run, _ = trained
    payload = torch.load(run / BEST, weights_only=True)
    assert isinstance(payload["meta"]["preprocessor"], str)  # one string: pickled in no time, however large
    schema = tiny_schema
    model, meta, pre = load_trained(run, schema)
    assert meta["preprocessor"] == json.loads(payload["meta"]["preprocessor"]) == pre.state
    older = tmp_path / "older"
    older.mkdir()
    payload["meta"]["preprocessor"] = pre.state  # how a checkpoint of template < v0.6.2 holds it
    torch.save(payload, older / BEST)
    old_model, old_meta, old_pre = load_trained(older, schema)
    assert old_pre.state == pre.state
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), old_model.state_dict().values()))
    payload["meta"]["preprocessor"] = "{not json"
    torch.save(payload, older / BEST)
    with pytest.raises(CheckpointError, match="corrupt preprocessing state; retrain"):
        load_trained(older, schema)


def test_train_reports_where_the_process_time_went(tmp_path, tiny_schema, tiny_files):
    config = config_from_dict({"epochs": 1, "batch_size": 512, "warmup_steps": 2, "data_cache": False})
    summary = train(*tiny_files, tmp_path / "run", config, tiny_schema, show_progress=False)
    phases = summary["phases"]
    assert {"read", "fit", "encode", "build", "steps", "evaluate", "checkpoint", "other"} <= set(phases)
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) == pytest.approx(summary["process_seconds"], abs=0.01)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["phases"] == phases


EXITING = """
import atexit, pathlib, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from bank_conversion.cli import exit_process
out = pathlib.Path(sys.argv[1])
def late():
    time.sleep(0.3)
    (out / "thread.txt").write_text("written")
threading.Thread(target=late).start()
pool = ThreadPoolExecutor(2)  # left open, as inductor's compile pool is: its idle workers wait for work
pool.submit(time.sleep, 0.05)
atexit.register(lambda: (out / "atexit.txt").write_text((out / "thread.txt").read_text()))
print("summary", end="")
exit_process(3)
"""


def test_a_command_exits_with_its_code_after_its_threads_and_exit_handlers_and_output(tmp_path, fresh_python):
    """``exit_process`` skips the teardown of torch's modules (0.4–0.6 s per command), not what an exit must
    do: a thread still writing finishes, then the ``atexit`` handlers run, and buffered output reaches a pipe.
    A thread pool left open does not hang it (v0.7.12 to v0.7.15 waited forever on its idle workers: every
    ``compile=true`` command hung after its work was done)."""
    proc = fresh_python("-c", EXITING, str(tmp_path), timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout == "summary" and (tmp_path / "atexit.txt").read_text() == "written"


@pytest.mark.distributed
def test_torchrun_two_processes_match_one_process(tmp_path, tiny_schema, tiny_files, fresh_python):
    """gloo, 2 CPU processes, same global batch: the validation NE of one process within 1e-3, also when each
    rank's 128 rows run in micro-batches of 50 (DDP all-reduces after the last one only).

    Measured: 2.5e-9 (one event, single tower) to 1.2e-4 (two events, PLE): gradient sums in another order.
    """
    features = tmp_path / "features.yaml"
    features.write_text(json.dumps(tiny_schema.to_dict()))
    args = ["--features", str(features), "train", "--train", str(tiny_files[0]), "--valid", str(tiny_files[1])]
    args += ["--quiet", "epochs=2", "batch_size=256", "warmup_steps=5"]
    package, threads = ["-m", "bank_conversion", *args], {"timeout": None, "OMP_NUM_THREADS": "1"}
    one = fresh_python(*package, "--out", str(tmp_path / "one"), **threads)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = fresh_python(*torchrun, *package, "--out", str(tmp_path / "two"), **threads)
    assert two.returncode == 0, two.stderr[-3000:]  # the failing rank's traceback and torchrun's summary
    assert json.loads(two.stdout)["steps"] > 0  # one summary: rank 1 prints nothing
    micro = fresh_python(*torchrun, *package, "micro_batch_size=50", "--out", str(tmp_path / "micro"), **threads)
    assert micro.returncode == 0, micro.stderr[-3000:]
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for run in ("two", "micro"):
        parallel = json.loads((tmp_path / run / "metrics.json").read_text())
        assert parallel["steps"] == single["steps"], run
        for event, metrics in single["valid"].items():
            assert abs(parallel["valid"][event]["ne"] - metrics["ne"]) < 1e-3, (run, event)


@pytest.fixture
def grouped_train(tmp_path, tiny_files):
    """The tiny train file rewritten with 6 row groups of 500 rows."""
    import pyarrow.parquet as pq

    path = tmp_path / "grouped.parquet"
    pq.write_table(pq.read_table(tiny_files[0]), path, row_group_size=500)
    assert pq.ParquetFile(path).num_row_groups == 6
    return path


def test_streamed_epoch_yields_every_row_once(grouped_train, tiny_schema):
    from bank_conversion.data import read_table
    from bank_conversion.preprocess import Preprocessor
    from bank_conversion.stream import StreamedBatches

    table = read_table(grouped_train, tiny_schema)
    pre = Preprocessor.fit(table, tiny_schema)
    whole = pre.transform(table)
    source = StreamedBatches(grouped_train, pre, batch_size=256, seed=3)
    batches = [source.batch(0, step) for step in range(12)]  # ceil(3000 / 256)
    assert [len(b) for b in batches] == [256] * 11 + [184]
    seen = torch.cat([b.dense for b in batches])
    assert torch.equal(seen.sort(dim=0).values, whole.dense.sort(dim=0).values)
    assert not torch.equal(seen, whole.dense)  # shuffled across and within groups
    assert torch.equal(source.batch(0, 5).sparse, batches[5].sparse)  # a resumed position replays exactly


def test_streamed_training_matches_in_memory_quality_and_resumes(tmp_path, grouped_train, tiny_schema, tiny_files):
    config = {"epochs": 2, "batch_size": 256, "warmup_steps": 5, "checkpoint_every": 3}
    memory = train(grouped_train, tiny_files[1], tmp_path / "m", config_from_dict(config), tiny_schema)
    streamed_config = config_from_dict({**config, "stream": True})
    streamed = train(grouped_train, tiny_files[1], tmp_path / "s", streamed_config, tiny_schema, show_progress=False)
    assert streamed["steps"] == memory["steps"]
    for event, metrics in memory["valid"].items():  # streaming must not cost quality; being better is noise
        assert streamed["valid"][event]["ne"] < metrics["ne"] + 0.03, event
    from bank_conversion.train import Interrupted

    with pytest.raises(Interrupted):
        train(grouped_train, tiny_files[1], tmp_path / "r", streamed_config, tiny_schema, stop_after=7)
    resumed = train(grouped_train, tiny_files[1], tmp_path / "r", streamed_config, tiny_schema, resume=True)
    assert resumed["valid"] == streamed["valid"]


def test_streaming_needs_parquet(tmp_path, tiny_schema, tiny_files):
    from bank_conversion.errors import DataError

    with pytest.raises(DataError, match="streaming needs a Parquet file"):
        train(tiny_files[1], tiny_files[1], tmp_path / "x", config_from_dict({"stream": True}), tiny_schema)
    assert not (tmp_path / "x").exists()
