"""MLP blocks shared by every tower: plain ``Linear → ReLU`` or residual + LayerNorm (template-owned).

The residual block (pre-LayerNorm, as in Wukong/HSTU stacks): y = ReLU(W·LN(x) + b) + S(x), where S is the
identity when widths match, else a bias-free projection. It keeps deep towers stable; the width multiplier
of the package scales every hidden size, which is the knob for sizing a model to a FLOPs budget.
"""

from __future__ import annotations

import torch
from torch import nn

BLOCKS = ("plain", "residual")


class ResidualBlock(nn.Module):
    """One residual + LayerNorm layer.

    Example:
        >>> ResidualBlock(8, 4)(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.linear = nn.Linear(in_dim, out_dim)
        self.shortcut = nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, out_dim)."""
        return torch.relu(self.linear(self.norm(x))) + self.shortcut(x)


class MLP(nn.Module):
    """A stack of blocks, one per hidden size.

    Args:
        in_dim: input width.
        sizes: output width of each layer; empty means identity.
        block: ``plain`` (Linear → ReLU) or ``residual`` (ResidualBlock).

    Example:
        >>> MLP(8, [16, 4])(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
        >>> MLP(8, [16, 16], block="residual")(torch.zeros(2, 8)).shape
        torch.Size([2, 16])
    """

    def __init__(self, in_dim: int, sizes: list[int], block: str = "plain"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown MLP block '{block}'; use one of {BLOCKS}")
        layers: list[nn.Module] = []
        for width in sizes:
            layers += [ResidualBlock(in_dim, width)] if block == "residual" else [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, out_dim)."""
        return self.layers(x)


def scaled(sizes: tuple[int, ...] | list[int], multiplier: float) -> list[int]:
    """Hidden sizes times the package's width multiplier (at least 1 each).

    Example:
        >>> scaled([256, 128], 0.5)
        [128, 64]
    """
    return [max(1, round(s * multiplier)) for s in sizes]
