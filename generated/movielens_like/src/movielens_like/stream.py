"""Where training batches come from: whole encoded tensors in memory, or Parquet row groups streamed
(template-owned).

Both yield global batch ``offset`` of epoch ``epoch`` as an ``EncodedData``; the order depends only on
(seed, epoch), so an interrupted run resumes exactly. ``InMemoryBatches`` gathers rows of a random
permutation. ``StreamedBatches`` (training option ``stream``) is for train files larger than memory: it
visits the row groups in a random order, encodes one group at a time, shuffles within it, and carries the
rows left over to the next group, so the epoch has the same ceil(N / batch) steps and each row once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from .preprocess import EncodedData, Preprocessor


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + epoch)


def concat(parts: list[EncodedData]) -> EncodedData:
    if len(parts) == 1:
        return parts[0]
    return EncodedData(
        sparse=torch.cat([p.sparse for p in parts]),
        multi_hot=[torch.cat(ms) for ms in zip(*(p.multi_hot for p in parts))],
        dense=torch.cat([p.dense for p in parts]),
        labels=torch.cat([p.labels for p in parts]),
    )


class InMemoryBatches:
    """Batches gathered from encoded tensors by a per-epoch permutation."""

    def __init__(self, data: EncodedData, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self._order: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.data)

    def batch_index(self, epoch: int, offset: int) -> torch.Tensor:
        """Row ids (B,) of batch ``offset`` of ``epoch``."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, torch.randperm(len(self.data), generator=epoch_generator(self.seed, epoch)))
        return self._order[1][offset * self.batch_size : (offset + 1) * self.batch_size]

    def batch(self, epoch: int, offset: int, rows_of_batch=lambda index: index) -> EncodedData:
        """``rows_of_batch`` picks this process's part of the global batch (see distributed.shard)."""
        index = rows_of_batch(self.batch_index(epoch, offset)).to(self.data.sparse.device)
        return self.data.rows(index)


class StreamedBatches:
    """Batches read from a Parquet train file one row group at a time (files larger than memory)."""

    def __init__(self, path: str | Path, pre: Preprocessor, batch_size: int, seed: int):
        from .data import parquet_row_groups  # pyarrow: imported by a streamed run only

        self.path, self.pre, self.batch_size, self.seed = Path(path), pre, batch_size, seed
        self.groups = parquet_row_groups(path)
        self._cursor: tuple[int, int, Iterator[EncodedData]] | None = None

    def __len__(self) -> int:
        return sum(self.groups)

    def label_rates(self) -> torch.Tensor:
        """Mean of each label column (E,), reading only the labels."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        labels = pq.read_table(self.path, columns=list(self.pre.schema.labels))
        return torch.tensor([float(pc.mean(labels.column(name)).as_py()) for name in self.pre.schema.labels])

    def batch(self, epoch: int, offset: int, rows_of_batch=lambda index: index) -> EncodedData:
        if self._cursor is None or self._cursor[:2] != (epoch, offset):
            self._cursor = (epoch, 0, self._epoch(epoch))
            for _ in range(offset):  # resume: replay the epoch up to the step (reads, no training)
                next(self._cursor[2])
            self._cursor = (epoch, offset, self._cursor[2])
        batch = next(self._cursor[2])
        self._cursor = (epoch, offset + 1, self._cursor[2])
        return batch.rows(rows_of_batch(torch.arange(len(batch))))

    def _epoch(self, epoch: int) -> Iterator[EncodedData]:
        from . import data

        generator = epoch_generator(self.seed, epoch)
        carry: list[EncodedData] = []
        for group in torch.randperm(len(self.groups), generator=generator).tolist():
            encoded = self.pre.transform(data.read_row_group(self.path, self.pre.schema, group))
            buffer = concat([*carry, encoded.rows(torch.randperm(len(encoded), generator=generator))])
            whole = len(buffer) // self.batch_size * self.batch_size
            for start in range(0, whole, self.batch_size):
                yield buffer.slice(start, start + self.batch_size)
            carry = [buffer.slice(whole, len(buffer))] if whole < len(buffer) else []
        if carry:
            yield carry[0]
