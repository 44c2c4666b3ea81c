"""This package's architecture, as answered when it was rendered (template-owned; regenerated on update).

To change an answer, re-render through the template (`smt sync --set KEY=VALUE` or `copier update --data`),
never by editing this file: the answers in .copier-answers.yml are the source of truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelSpec:
    """The template answers that shape the model."""

    name: str
    events: tuple[str, ...]
    interaction: str
    dcn_rank: int
    dcn_layers: int
    towers: str
    num_experts: int
    embedding_dim: int
    dense_arch: tuple[int, ...]
    over_arch: tuple[int, ...]
    tower_arch: tuple[int, ...]
    mlp_block: str
    width_multiplier: float
    flops_budget: int
    qr_collisions: int = 0  # 0 = one row per id; else quotient-remainder tables above qr_min_rows rows
    qr_min_rows: int = 0
    numeric_embedding: str = "none"  # "periodic": one more vector per dense column (modules/numeric.py)

    def to_dict(self) -> dict:
        return asdict(self)


SPEC = ModelSpec(
    name="credit_default",
    events=("label",),
    interaction="concat",
    dcn_rank=0,
    dcn_layers=0,
    towers="single",
    num_experts=0,
    embedding_dim=16,
    dense_arch=(64,),
    over_arch=(256, 128),
    tower_arch=(),
    mlp_block="plain",
    width_multiplier=1.0,
    flops_budget=159488,
    qr_collisions=0,
    qr_min_rows=0,
    numeric_embedding="periodic",
)
