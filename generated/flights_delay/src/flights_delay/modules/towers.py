"""OverArch: the tower slot above the interaction, with one logit per event (template-owned)."""

from __future__ import annotations

import torch
from torch import nn

from .mlp import MLP, scaled


class SingleTower(nn.Module):
    """One MLP shared by every event, then a linear head per event.

    Example:
        >>> SingleTower(8, [16], num_events=2)(torch.zeros(3, 8)).shape
        torch.Size([3, 2])
    """

    def __init__(self, in_dim: int, sizes: list[int], num_events: int, block: str = "plain"):
        super().__init__()
        self.mlp = MLP(in_dim, sizes, block)
        self.heads = nn.Linear(self.mlp.out_dim, num_events)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → logits (B, E)."""
        return self.heads(self.mlp(x))

    @torch.no_grad()
    def init_output_bias(self, logits: torch.Tensor) -> None:
        """Start each head at a given logit (E,), e.g. the log-odds of its base rate."""
        self.heads.bias.copy_(logits)


class SharedBottom(nn.Module):
    """A shared bottom MLP, then one small tower and head per event (Caruana 1997).

    Example:
        >>> SharedBottom(8, [16], [4], num_events=2)(torch.zeros(3, 8)).shape
        torch.Size([3, 2])
    """

    def __init__(self, in_dim: int, sizes: list[int], tower_sizes: list[int], num_events: int, block: str = "plain"):
        super().__init__()
        self.bottom = MLP(in_dim, sizes, block)
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(self.bottom.out_dim, tower_sizes, block), nn.Linear(_out(self.bottom, tower_sizes), 1))
            for _ in range(num_events)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → logits (B, E)."""
        shared = self.bottom(x)  # (B, H)
        return torch.cat([tower(shared) for tower in self.towers], dim=1)  # (B, E)

    @torch.no_grad()
    def init_output_bias(self, logits: torch.Tensor) -> None:
        """Start each event's head at a given logit (E,)."""
        for tower, logit in zip(self.towers, logits):
            tower[-1].bias.fill_(float(logit))


class MMoE(nn.Module):
    """Multi-gate mixture of experts (Ma et al., KDD 2018).

    X expert MLPs see the input; each event mixes them with its own softmax gate, then has its own tower.

    Example:
        >>> MMoE(8, [16], [4], num_events=2, num_experts=3)(torch.zeros(5, 8)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self, in_dim: int, sizes: list[int], tower_sizes: list[int], num_events: int, num_experts: int, block="plain"
    ):
        super().__init__()
        self.experts = nn.ModuleList(MLP(in_dim, sizes, block) for _ in range(num_experts))
        self.gates = nn.Linear(in_dim, num_events * num_experts)
        self.num_events, self.num_experts = num_events, num_experts
        expert_dim = self.experts[0].out_dim
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(expert_dim, tower_sizes, block), nn.Linear(_out(self.experts[0], tower_sizes), 1))
            for _ in range(num_events)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → logits (B, E)."""
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, X, H)
        gates = self.gates(x).view(-1, self.num_events, self.num_experts).softmax(dim=-1)  # (B, E, X)
        mixed = torch.bmm(gates, experts)  # (B, E, H)
        return torch.cat([tower(mixed[:, e]) for e, tower in enumerate(self.towers)], dim=1)  # (B, E)

    @torch.no_grad()
    def init_output_bias(self, logits: torch.Tensor) -> None:
        """Start each event's head at a given logit (E,)."""
        for tower, logit in zip(self.towers, logits):
            tower[-1].bias.fill_(float(logit))


class PLE(nn.Module):
    """Progressive layered extraction, one CGC level (Tang et al., RecSys 2020).

    X shared experts plus one expert per event; each event's softmax gate mixes its own expert and the
    shared ones, so tasks that disagree do not have to share everything (the MMoE "seesaw").

    Example:
        >>> PLE(8, [16], [4], num_events=2, num_experts=3)(torch.zeros(5, 8)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self, in_dim: int, sizes: list[int], tower_sizes: list[int], num_events: int, num_experts: int, block="plain"
    ):
        super().__init__()
        self.shared = nn.ModuleList(MLP(in_dim, sizes, block) for _ in range(num_experts))
        self.own = nn.ModuleList(MLP(in_dim, sizes, block) for _ in range(num_events))
        self.gates = nn.ModuleList(nn.Linear(in_dim, num_experts + 1) for _ in range(num_events))
        expert_dim = self.shared[0].out_dim
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(expert_dim, tower_sizes, block), nn.Linear(_out(self.shared[0], tower_sizes), 1))
            for _ in range(num_events)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → logits (B, E)."""
        shared = torch.stack([expert(x) for expert in self.shared], dim=1)  # (B, X, H)
        logits = []
        for own, gate, tower in zip(self.own, self.gates, self.towers):
            experts = torch.cat([own(x).unsqueeze(1), shared], dim=1)  # (B, X + 1, H)
            weights = gate(x).softmax(dim=-1).unsqueeze(1)  # (B, 1, X + 1)
            logits.append(tower(torch.bmm(weights, experts).squeeze(1)))  # (B, 1)
        return torch.cat(logits, dim=1)  # (B, E)

    @torch.no_grad()
    def init_output_bias(self, logits: torch.Tensor) -> None:
        """Start each event's head at a given logit (E,)."""
        for tower, logit in zip(self.towers, logits):
            tower[-1].bias.fill_(float(logit))


def _out(bottom: MLP, tower_sizes: list[int]) -> int:
    return tower_sizes[-1] if tower_sizes else bottom.out_dim


def build_towers(kind: str, in_dim: int, spec) -> nn.Module:
    """The towers named by the package's ``towers`` answer; ``spec`` is the package's ModelSpec."""
    events, block = len(spec.events), spec.mlp_block
    over, tower = scaled(spec.over_arch, spec.width_multiplier), scaled(spec.tower_arch, spec.width_multiplier)
    if kind == "single":
        return SingleTower(in_dim, over, events, block)
    if kind == "shared_bottom":
        return SharedBottom(in_dim, over, tower, events, block)
    if kind == "mmoe":
        return MMoE(in_dim, over, tower, events, spec.num_experts, block)
    if kind == "ple":
        return PLE(in_dim, over, tower, events, spec.num_experts, block)
    raise ValueError(f"unknown towers '{kind}'")
