"""Capacity of a model: parameters, embedding bytes, dense FLOPs per example (template-owned).

FLOPs are counted by torch's flop formulas (``flops.py``) on a forward pass (matmuls only; lookups count as 0),
divided by the batch size, so comparisons at a serving budget use one definition.
"""

from __future__ import annotations

import torch

from .flops import forward_flops
from .model import FeatureSizes, RankingModel
from .preprocess import FIRST_ID
from .schema import FeatureSchema


def sizes_from_schema(schema: FeatureSchema) -> FeatureSizes:
    """Table sizes implied by the schema alone (hash buckets, or the ``cardinality`` hints of vocabularies)."""
    sparse = [FIRST_ID + (f.buckets if f.encoding == "hash" else f.cardinality) for f in schema.sparse]
    sparse += [FIRST_ID + f.buckets for f in schema.bucketized]
    multi = tuple(FIRST_ID + f.cardinality for f in schema.multi_hot)
    return FeatureSizes(tuple(sparse), multi, schema.dense_width)


def example_inputs(sizes: FeatureSizes, schema: FeatureSchema, batch: int, seed: int = 0) -> tuple:
    """Random valid model inputs: (sparse (B, Fs), dense (B, Fd), multi_hot [(B, L_i)])."""
    g = torch.Generator().manual_seed(seed)
    sparse = torch.zeros((batch, len(sizes.sparse)), dtype=torch.long)
    for j, n in enumerate(sizes.sparse):
        sparse[:, j] = torch.randint(0, n, (batch,), generator=g)
    dense = torch.randn((batch, sizes.num_dense), generator=g)
    multi = [torch.randint(0, n, (batch, f.max_length), generator=g) for n, f in zip(sizes.multi_hot, schema.multi_hot)]
    return sparse, dense, multi


def capacity(model: RankingModel, sizes: FeatureSizes, schema: FeatureSchema, batch: int = 64) -> dict:
    embedding = model.embedding_parameters()
    embedding_params = sum(p.numel() for p in embedding)
    total = sum(p.numel() for p in model.parameters())
    embedding_bytes = sum(p.numel() * p.element_size() for p in embedding)
    was_training = model.training
    model.eval()
    inputs = example_inputs(sizes, schema, batch)
    flops = forward_flops(lambda: model(*inputs))
    model.train(was_training)
    return {
        "parameters": total,
        "dense_parameters": total - embedding_params,
        "embedding_parameters": embedding_params,
        "embedding_bytes": embedding_bytes,
        "dense_flops_per_example": flops / batch,
    }
