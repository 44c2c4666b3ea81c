"""The extension contract: the stage slots a package's ``extensions.py`` may fill (template-owned).

A model is SparseArch → DenseArch → InteractionArch → OverArch. An extension never wraps the model: it
supplies stages, and ``builder.build_model`` places them, the way torchrec's DLRM swaps one arch. Each slot
is optional; an empty ``Extension()`` is the template's model, bit for bit.

==================  ======================================================  =====================================
slot                contract                                                placed
==================  ======================================================  =====================================
``feature_vectors`` ``nn.Module``, ``forward(sparse (B, Fs), dense (B, Fd),  appended after the template's vectors:
                    multi_hot [(B, L_i)]) -> (B, K, D)``, int attribute      the interaction sees
                    ``num_vectors`` = K                                      ``layout.num_vectors + K`` vectors
``interaction``     ``nn.Module``, ``forward((B, F, D)) -> (B, H)``, int     replaces the answer ``interaction``
                    attribute ``output_dim`` = H
``over_arch``       ``nn.Module``, ``forward((B, H)) -> (B, E)`` logits,      replaces the answer ``towers``
                    ``init_output_bias(bias (E,))``
``loss_terms``      callables ``(logits (B, E), labels (B, E), model) ->      added to the training loss
                    0-d tensor``, without parameters of their own            (never to evaluation or export)
==================  ======================================================  =====================================

Parameters of extension stages train with the dense optimizer (AdamW), except those of ``nn.Embedding`` /
``nn.EmbeddingBag`` modules built with ``sparse=True``, which train with the embedding optimizer like the
template's tables. The calibration buffer, the base-rate initialisation and the parameter split belong to
``RankingModel``: an extension cannot lose them. A slot that breaks its contract fails when the model is
built, with one line naming the slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError

LossTerm = Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """What the template's stages produce, for sizing extension stages.

    ``num_vectors`` counts SparseArch's vectors plus the DenseArch vector (when there are dense features),
    before any ``feature_vectors`` of the extension.
    """

    dim: int
    num_vectors: int
    events: tuple[str, ...]
    num_sparse: int
    num_multi_hot: int
    num_dense: int


@dataclass(frozen=True)
class Extension:
    """The stages a package supplies; every slot is optional (see the table in this module's docstring)."""

    feature_vectors: nn.Module | None = None
    interaction: nn.Module | None = None
    over_arch: nn.Module | None = None
    loss_terms: Sequence[LossTerm] = ()


class ExtensionError(ConfigError):
    """An extension slot breaks its contract; the message names the slot."""


def check_slots(extension: object) -> Extension:
    """``extension`` if every filled slot has the right kind of object, else ExtensionError naming the slot."""
    if not isinstance(extension, Extension):
        raise ExtensionError(f"extensions.extension() must return stages.Extension, got {type(extension).__name__}")
    for slot in ("feature_vectors", "interaction", "over_arch"):
        value = getattr(extension, slot)
        if value is not None and not isinstance(value, nn.Module):
            raise ExtensionError(f"extension slot '{slot}' must be an nn.Module, got {type(value).__name__}")
    _positive_int(extension.feature_vectors, "feature_vectors", "num_vectors")
    _positive_int(extension.interaction, "interaction", "output_dim")
    if extension.over_arch is not None and not callable(getattr(extension.over_arch, "init_output_bias", None)):
        raise ExtensionError(
            "extension slot 'over_arch' must define init_output_bias(bias (E,)) (heads start at base-rate log-odds)"
        )
    for i, term in enumerate(extension.loss_terms):
        if not callable(term):
            raise ExtensionError(f"extension slot 'loss_terms[{i}]' must be callable, got {type(term).__name__}")
        if isinstance(term, nn.Module) and any(True for _ in term.parameters()):
            raise ExtensionError(
                f"extension slot 'loss_terms[{i}]' has parameters of its own; put learnable parts in a stage"
            )
    return extension


def _positive_int(stage: nn.Module | None, slot: str, attribute: str) -> None:
    if stage is None:
        return
    value = getattr(stage, attribute, None)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ExtensionError(f"extension slot '{slot}' must have a positive int attribute {attribute}, got {value!r}")


def check_shapes(model: nn.Module, extension: Extension, inputs: tuple, events: int) -> None:
    """Run each filled slot once on a probe batch and check its output shape (ExtensionError naming the slot).

    ``inputs`` are valid model inputs ``(sparse (B, Fs), dense (B, Fd), multi_hot [(B, L_i)])``.
    """
    if extension == Extension():
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = inputs[0].shape[0]
            vectors = _stage(model.base_vectors, "SparseArch/DenseArch", *inputs)  # (B, F, D)
            dim = vectors.shape[-1]
            if extension.feature_vectors is not None:
                extra = _stage(extension.feature_vectors, "feature_vectors", *inputs)
                _expect(extra, (batch, extension.feature_vectors.num_vectors, dim), "feature_vectors")
                vectors = torch.cat([vectors, extra.to(vectors.dtype)], dim=1)
            hidden = _stage(model.interaction, "interaction", vectors)
            _expect(hidden, (batch, model.interaction.output_dim), "interaction")
            logits = _stage(model.over_arch, "over_arch", hidden)
            _expect(logits, (batch, events), "over_arch")
            labels = torch.zeros_like(logits)
            for i, term in enumerate(extension.loss_terms):
                value = _stage(term, f"loss_terms[{i}]", logits, labels, model)
                if not isinstance(value, torch.Tensor) or value.dim() != 0:
                    raise ExtensionError(f"extension slot 'loss_terms[{i}]' must return a 0-d tensor")
    finally:
        model.train(was_training)


def _stage(stage: Callable, slot: str, *args):
    try:
        return stage(*args)
    except ExtensionError:
        raise
    except Exception as exc:  # noqa: BLE001 — any failure of a user stage is reported against its slot
        raise ExtensionError(f"extension slot '{slot}' failed on a probe batch: {type(exc).__name__}: {exc}") from exc


def _expect(value: object, shape: tuple[int, ...], slot: str) -> None:
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ExtensionError(f"extension slot '{slot}' must return shape {shape}, got {got}")
