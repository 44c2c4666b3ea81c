"""pyarrow columns → numpy ids and values: the encoders behind ``Preprocessor.fit`` and ``transform``
(template-owned).

The id layout is ``preprocess``'s (0 missing, 1 out of vocabulary, 2.. entries or buckets). This module is the
only one of the preprocessing that imports pyarrow, and ``preprocess`` imports it on first fit or transform:
a process that reads its data from the cache (a warm-cache ``train``) never imports pyarrow (about 0.1 s).
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .preprocess import FIRST_ID, MISSING, OOV
from .schema import MultiHotFeature


def as_strings(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``column`` as one string array (N,)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    return column


def as_floats(column: pa.ChunkedArray) -> np.ndarray:
    """``column`` as float64 (N,), nulls as NaN."""
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def split(column: pa.ChunkedArray, f: MultiHotFeature) -> pa.Array:
    """Each row's text split on ``f.separator``: a list array (N,)."""
    return pc.split_pattern(as_strings(column), pattern=f.separator)


def fit_vocab(tokens: pa.Array, min_count: int) -> list[str]:
    """Tokens seen at least ``min_count`` times, most frequent first (ties by value: deterministic)."""
    tokens = pc.drop_null(tokens)
    tokens = tokens.filter(pc.not_equal(tokens, ""))
    if len(tokens) == 0:
        return []
    counts = pc.value_counts(tokens)
    ranked = pa.table({"value": counts.field("values"), "count": counts.field("counts")})
    ranked = ranked.filter(pc.greater_equal(ranked["count"], min_count))
    order = pc.sort_indices(ranked, sort_keys=[("count", "descending"), ("value", "ascending")])
    return ranked["value"].take(order).to_pylist()


def multi_hot_vocab(column: pa.ChunkedArray, f: MultiHotFeature) -> list[str]:
    """The vocabulary of the tokens of a multi-hot column."""
    return fit_vocab(pc.list_flatten(split(column, f)), f.min_count)


def vocab_ids(tokens: pa.Array, vocab: list[str]) -> np.ndarray:
    """int64 ids (N,) of ``tokens``: FIRST_ID + the index in ``vocab``, OOV when absent, MISSING for null/""."""
    found = pc.index_in(tokens, value_set=pa.array(vocab, type=pa.string())).fill_null(-1)
    found = found.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = np.where(found < 0, OOV, found + FIRST_ID)
    missing = pc.or_(pc.is_null(tokens), pc.equal(tokens, "")).fill_null(True)
    ids[missing.to_numpy(zero_copy_only=False)] = MISSING
    return ids


def hash_ids(tokens: pa.Array, buckets: int) -> np.ndarray:
    """int64 ids (N,): stable hashing (crc32) of each distinct value, then a gather: cost ~ distinct values,
    not rows."""
    encoded = pc.dictionary_encode(tokens)
    uniques = encoded.dictionary.to_pylist()
    bucket_of = np.array([zlib.crc32(u.encode()) % buckets + FIRST_ID if u else MISSING for u in uniques])
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    valid = ~np.asarray(pc.is_null(encoded.indices).to_numpy(zero_copy_only=False))
    ids = np.full(len(tokens), MISSING, dtype=np.int64)
    ids[valid] = bucket_of.astype(np.int64)[codes[valid].astype(np.int64)]
    return ids


def multi_hot_ids(column: pa.ChunkedArray, f: MultiHotFeature, vocab: list[str]) -> np.ndarray:
    """int64 ids (N, f.max_length) of each row's first ``f.max_length`` present tokens, MISSING-padded."""
    lists = split(column, f)
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ids = vocab_ids(pc.list_flatten(lists), vocab)
    out = np.zeros((len(lengths), f.max_length), dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(len(ids)) - starts
    keep = (position < f.max_length) & (ids != MISSING)
    out[rows[keep], position[keep]] = ids[keep]
    return out
