"""Shapes and numerics of every model component (template-owned)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from movielens_like.model import FeatureSizes, RankingModel
from movielens_like.modules.dense import DenseArch
from movielens_like.modules.embedding import SparseArch
from movielens_like.modules.interaction import ConcatInteraction, DotInteraction, LowRankCrossInteraction
from movielens_like.modules.mlp import MLP, ResidualBlock, scaled
from movielens_like.modules.numeric import PeriodicEmbedding
from movielens_like.modules.towers import PLE, MMoE, SharedBottom, SingleTower
from movielens_like.spec import SPEC

B, F, D = 5, 4, 3


def test_sparse_arch_stacks_tables_and_bags():
    arch = SparseArch([10, 20], [7], dim=D)
    out = arch(torch.randint(0, 10, (B, 2)), [torch.randint(0, 7, (B, 3))])
    assert out.shape == (B, 3, D)


def test_periodic_embedding_gives_each_dense_column_its_own_vector():
    torch.manual_seed(0)
    emb = PeriodicEmbedding(3, dim=D, frequencies=4)
    dense = torch.randn(B, 3)
    assert emb(dense).shape == (B, 3, D) and (emb(dense) >= 0).all()
    with torch.no_grad():
        emb.bias.fill_(10.0)  # every unit active: a change of the input cannot hide behind the ReLU
    out = emb(dense)
    changed = dense.clone()
    changed[:, 1] += 1.0  # a column's vector depends on that column only
    moved = (emb(changed) != out).any(dim=(0, 2))
    assert moved.tolist() == [False, True, False]
    out.sum().backward()
    assert emb.frequencies.grad.abs().sum() > 0  # the frequencies train


def test_numeric_embedding_adds_one_vector_per_dense_column_and_old_checkpoints_still_match():
    from movielens_like.checkpoint import check_compatible
    from movielens_like.model import layout
    from movielens_like.schema import schema_from_dict

    sizes = FeatureSizes((10,), (), 2)
    plain = dataclasses.replace(SPEC, numeric_embedding="none")
    periodic = dataclasses.replace(SPEC, numeric_embedding="periodic")
    assert layout(periodic, sizes).num_vectors == layout(plain, sizes).num_vectors + 2
    model = RankingModel(periodic, sizes)
    assert model(torch.zeros(B, 1, dtype=torch.long), torch.randn(B, 2), []).shape == (B, len(SPEC.events))
    schema = schema_from_dict({"labels": list(SPEC.events), "dense": [{"name": "x"}]})
    before = {k: v for k, v in plain.to_dict().items() if k != "numeric_embedding"}  # a pre-v0.4.1 checkpoint
    meta = {"package": SPEC.name, "spec": before, "schema": schema.to_dict()}
    check_compatible(meta, plain, schema, "old.pt")  # the later answer at its default: compatible
    with pytest.raises(Exception, match="numeric_embedding"):
        check_compatible(meta, periodic, schema, "old.pt")


def test_multi_hot_bag_ignores_padding():
    arch = SparseArch([], [7], dim=D)
    padded = torch.tensor([[3, 4, 0, 0]])
    expected = arch.bags[0].weight[[3, 4]].mean(dim=0)
    assert torch.allclose(arch(torch.zeros((1, 0), dtype=torch.long), [padded])[0, 0], expected)


def test_quotient_remainder_embeddings_multiply_two_small_tables():
    arch = SparseArch([5, 1000], [], dim=D, quotient_remainder=(8, 100))
    assert arch.qr_features == [1] and arch.table.weight.shape[0] == 5 + 125 + 8  # not 5 + 1000
    ids = torch.tensor([[3, 999], [0, 17]])
    out = arch(ids, [])
    weight, offsets = arch.table.weight, arch.offsets
    for row in range(2):
        i = int(ids[row, 1])
        assert torch.equal(out[row, 0], weight[offsets[0] + ids[row, 0]])
        assert torch.allclose(out[row, 1], weight[offsets[1] + i // 8] * weight[offsets[2] + i % 8])
    every_id = torch.stack([torch.zeros(1000, dtype=torch.long), torch.arange(1000)], dim=1)
    assert torch.unique(arch(every_id, [])[:, 1], dim=0).shape[0] == 1000  # each id keeps its own vector


def test_quotient_remainder_embeddings_export_with_a_dynamic_batch():
    arch = SparseArch([5, 1000], [7], dim=D, quotient_remainder=(8, 100)).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = (torch.tensor([[1, 500], [2, 3]]), [torch.tensor([[1, 2], [3, 0]])])
    program = torch.export.export(arch, example, dynamic_shapes=({0: batch}, [{0: batch}]))
    check = (torch.randint(0, 5, (9, 1)).repeat(1, 2) * 199, [torch.randint(0, 7, (9, 2))])
    assert torch.allclose(program.module()(*check), arch(*check))


def test_residual_block_matches_formula():
    x = torch.randn(B, 6)
    same, wider = ResidualBlock(6, 6), ResidualBlock(6, 9)
    norm = torch.nn.functional.layer_norm(x, (6,))
    assert torch.allclose(same(x), torch.relu(same.linear(norm)) + x, atol=1e-6)
    assert torch.allclose(wider(x), torch.relu(wider.linear(norm)) + x @ wider.shortcut.weight.T, atol=1e-6)


def test_mlp_blocks_and_width_multiplier():
    assert scaled((256, 64), 0.5) == [128, 32] and scaled((3,), 0.1) == [1]
    assert MLP(6, [8, 8], block="residual")(torch.randn(B, 6)).shape == (B, 8)
    with pytest.raises(ValueError, match="unknown MLP block"):
        MLP(6, [8], block="dense")


def test_dense_arch_shape():
    assert DenseArch(6, [8, 4], dim=D)(torch.randn(B, 6)).shape == (B, D)


def test_concat_interaction_flattens():
    x = torch.randn(B, F, D)
    assert torch.equal(ConcatInteraction(F, D)(x), x.reshape(B, F * D))


def test_dot_interaction_matches_loops():
    x = torch.randn(B, F, D)
    out = DotInteraction(F, D)(x)
    pairs = [(x[:, i] * x[:, j]).sum(dim=1) for i in range(F) for j in range(i + 1, F)]
    expected = torch.cat([x[:, -1], torch.stack(pairs, dim=1)], dim=1)
    assert out.shape == (B, D + F * (F - 1) // 2)
    assert torch.allclose(out, expected, atol=1e-6)


def test_low_rank_cross_matches_formula():
    x = torch.randn(B, F, D)
    net = LowRankCrossInteraction(F, D, rank=2, layers=2)
    x0 = x.reshape(B, F * D)
    xl = x0
    for down, up in zip(net.down, net.up):
        w = up.weight @ down.weight  # (F·D, F·D) of rank 2
        xl = x0 * (xl @ w.T + up.bias) + xl
    assert torch.allclose(net(x), xl, atol=1e-5)


@pytest.mark.parametrize(
    "tower",
    [
        SingleTower(12, [8], num_events=2),
        SharedBottom(12, [8], [4], num_events=2),
        MMoE(12, [8], [4], num_events=2, num_experts=3),
        PLE(12, [8], [4], num_events=2, num_experts=3),
    ],
)
def test_towers_give_one_logit_per_event(tower):
    assert tower(torch.randn(B, 12)).shape == (B, 2)


def test_ple_event_sees_only_its_own_and_shared_experts():
    torch.manual_seed(0)
    ple = PLE(12, [8], [], num_events=2, num_experts=3)
    x = torch.randn(B, 12)
    before = ple(x)
    with torch.no_grad():
        ple.own[1].layers[0].weight.add_(1.0)  # change event 1's own expert only
    after = ple(x)
    assert torch.allclose(before[:, 0], after[:, 0]) and not torch.allclose(before[:, 1], after[:, 1])


def test_mmoe_gates_are_distributions():
    mmoe = MMoE(12, [8], [], num_events=2, num_experts=3)
    gates = mmoe.gates(torch.randn(B, 12)).view(B, 2, 3).softmax(-1)
    assert torch.allclose(gates.sum(-1), torch.ones(B, 2))


@pytest.mark.parametrize("sizes", [FeatureSizes((10, 20), (7,), 3), FeatureSizes((), (), 4), FeatureSizes((9,), (), 0)])
@pytest.mark.parametrize("block", ["plain", "residual"])
def test_model_of_this_package_gives_logits_per_event(sizes, block):
    model = RankingModel(dataclasses.replace(SPEC, mlp_block=block, width_multiplier=0.5), sizes)
    sparse = torch.stack([torch.randint(0, n, (B,)) for n in sizes.sparse], 1) if sizes.sparse else None
    sparse = sparse if sparse is not None else torch.zeros((B, 0), dtype=torch.long)
    multi = [torch.randint(0, n, (B, 4)) for n in sizes.multi_hot]
    assert model(sparse, torch.randn(B, sizes.num_dense), multi).shape == (B, len(SPEC.events))


def test_model_can_overfit_a_tiny_batch():
    torch.manual_seed(0)
    sizes = FeatureSizes((30, 30), (), 2)
    model = RankingModel(SPEC, sizes)
    sparse = torch.randint(0, 30, (64, 2))
    dense, labels = torch.randn(64, 2), torch.randint(0, 2, (64, len(SPEC.events))).float()
    dense_opt = torch.optim.Adam(model.dense_parameters(), lr=1e-2)
    sparse_opt = torch.optim.SparseAdam(model.embedding_parameters(), lr=5e-2)
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(sparse, dense, []), labels)
        dense_opt.zero_grad(), sparse_opt.zero_grad()
        loss.backward()
        dense_opt.step(), sparse_opt.step()
    assert loss.item() < 0.05


def test_flops_budget_sizes_the_model_within_two_percent():
    from movielens_like.budget import dense_flops, fit_to_budget
    from movielens_like.errors import ConfigError

    sizes = FeatureSizes((10, 20, 30), (7,), 3)
    plain = dense_flops(SPEC, sizes)
    for budget in (plain * 0.5, plain * 2.0):
        fitted = fit_to_budget(dataclasses.replace(SPEC, flops_budget=int(budget)), sizes)
        assert abs(dense_flops(fitted, sizes) - budget) <= 0.02 * budget
        assert fitted.width_multiplier != SPEC.width_multiplier
    with pytest.raises(ConfigError, match="too small for any model"):
        fit_to_budget(dataclasses.replace(SPEC, flops_budget=10), sizes)


def test_a_budget_just_above_the_defaults_flops_is_fitted_above_it():
    from movielens_like.budget import TOLERANCE, dense_flops, fit_to_budget

    sizes = FeatureSizes((10, 20, 30), (7,), 3)
    plain = dense_flops(SPEC, sizes)
    budget = plain * (1 + 0.95 * TOLERANCE)  # the defaults are within tolerance; a closer width exists above
    fitted = dense_flops(fit_to_budget(dataclasses.replace(SPEC, flops_budget=int(budget)), sizes), sizes)
    assert abs(fitted - budget) < abs(plain - budget)


def test_flops_are_counted_as_torchs_flop_counter_mode_counts_them():
    from torch.utils.flop_counter import FlopCounterMode

    from movielens_like.flops import forward_flops
    from movielens_like.model import probe_inputs

    for sizes in (FeatureSizes((10, 20, 30), (7,), 3), FeatureSizes((5,), (), 0)):
        model = RankingModel(SPEC, sizes).eval()
        inputs = probe_inputs(sizes, 8)
        with torch.no_grad(), FlopCounterMode(display=False) as reference:
            model(*inputs)
        assert forward_flops(lambda m=model, x=inputs: m(*x)) == reference.get_total_flops() > 0


def test_a_higher_order_operator_is_counted_as_torch_counts_it():
    """torch.cond (an extension may use one) compiles its branches; counting falls back to FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    from movielens_like.flops import forward_flops

    if not hasattr(torch, "cond"):
        pytest.skip("this torch has no torch.cond")
    x = torch.randn(4, 4)

    def forward():
        return torch.cond(x.sum() > 0, lambda y: y @ y, lambda y: y @ y.T, (x,))

    with torch.no_grad(), FlopCounterMode(display=False) as reference:
        forward()
    assert forward_flops(forward) == reference.get_total_flops() == 2 * 4 * 4 * 4


def test_counting_flops_and_fitting_a_budget_do_not_start_torch_dynamo(fresh_python):
    """torch's FlopCounterMode imports torch._dynamo on first use (1-2 s of every process that counts)."""
    script = (
        "import dataclasses, sys, torch\n"
        "from movielens_like.budget import dense_flops, fit_to_budget\n"
        "from movielens_like.model import FeatureSizes\n"
        "from movielens_like.spec import SPEC\n"
        "before = 'torch._dynamo' in sys.modules  # imported with torch or with the package's own extension\n"
        "sizes = FeatureSizes((10, 20, 30), (7,), 3)\n"
        "fit_to_budget(dataclasses.replace(SPEC, flops_budget=int(2 * dense_flops(SPEC, sizes))), sizes)\n"
        "print(before, 'torch._dynamo' in sys.modules)\n"
    )
    proc = fresh_python("-c", script)
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.split()
    if before == "True":
        pytest.skip("torch._dynamo is imported before anything is counted (by this torch, or by an extension)")
    assert after == "False"


def test_a_budget_that_would_leave_layers_too_narrow_to_learn_is_refused():
    from movielens_like.budget import MIN_WIDTH, dense_flops, fit_to_budget, narrowest_layer
    from movielens_like.errors import ConfigError

    sizes = FeatureSizes((10, 20, 30), (7,), 3)
    spec = dataclasses.replace(SPEC, dense_arch=(64,), over_arch=(256, 128), tower_arch=())
    narrow = dataclasses.replace(spec, width_multiplier=2 / 128)  # 256, 128 → 4, 2: the layers bio_rare got
    assert narrowest_layer(narrow, sizes) == 1  # dense_arch 64 → 1
    with pytest.raises(ConfigError, match=f"leaves an MLP layer 1 wide.*at least {MIN_WIDTH} units"):
        fit_to_budget(dataclasses.replace(spec, flops_budget=int(dense_flops(narrow, sizes))), sizes)
    fine = dataclasses.replace(spec, width_multiplier=0.25)  # 128 → 32
    fitted = fit_to_budget(dataclasses.replace(spec, flops_budget=int(dense_flops(fine, sizes))), sizes)
    assert narrowest_layer(fitted, sizes) >= MIN_WIDTH
    assert narrowest_layer(dataclasses.replace(spec, over_arch=(4,), dense_arch=(4,)), sizes) is None  # declared


def test_wide_probes_count_the_same_flops_on_the_meta_device():
    from movielens_like.budget import _count

    sizes = FeatureSizes((10, 20, 30), (7,), 3)
    wide = dataclasses.replace(SPEC, width_multiplier=6.0)
    assert _count(wide, sizes, torch.device("meta")) == _count(wide, sizes, torch.device("cpu"))


def test_bucketized_dense_and_missing_indicators_are_encoded_from_train():
    import pyarrow as pa

    from movielens_like.preprocess import FIRST_ID, MISSING, Preprocessor
    from movielens_like.schema import schema_from_dict

    schema = schema_from_dict(
        {
            "labels": list(SPEC.events),
            "sparse": ["s"],
            "dense": [{"name": "x", "buckets": 4, "missing_indicator": True}, {"name": "z"}],
        }
    )
    labels = {e: [0, 1, 0, 1, 0] for e in SPEC.events}
    train = pa.table({**labels, "s": ["a"] * 5, "x": [1.0, 2.0, 3.0, 4.0, None], "z": [0.0] * 5})
    pre = Preprocessor.fit(train, schema)
    assert pre.cardinalities()[0] == [FIRST_ID + 1, FIRST_ID + len(pre.state["edges"]["x"]) + 1]
    data = pre.transform(pa.table({**labels, "s": ["a"] * 5, "x": [0.0, 2.5, 100.0, None, 4.0], "z": [1.0] * 5}))
    buckets = data.sparse[:, 1].tolist()
    assert buckets[0] == FIRST_ID and buckets[2] == FIRST_ID + len(pre.state["edges"]["x"]) and buckets[3] == MISSING
    assert buckets[0] <= buckets[1] <= buckets[2]
    assert data.dense.shape == (5, 3) and data.dense[:, 2].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
