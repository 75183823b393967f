"""The parameters of one adapted module: trainable A, B and their frozen initial values A0, B0,
with rank slots [:r] the deployed block and [r:] the quarantine block.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ModuleAdapter"]


class ModuleAdapter(nn.Module):
    """Parameters of one adapted module: trainable A [2r, d_in], B [d_out, 2r] (fp32) and frozen
    buffers A0, B0 (their initial values). Slots [:r] deployed, [r:] quarantine."""

    def __init__(self, a0: Tensor, b0: Tensor, r: int) -> None:
        super().__init__()
        if a0.shape[0] != 2 * r or b0.shape[1] != 2 * r:
            raise ValueError(f"A0 {tuple(a0.shape)} / B0 {tuple(b0.shape)} do not have 2r={2 * r}")
        self.r = r
        self.A = nn.Parameter(a0.detach().float().clone())
        self.B = nn.Parameter(b0.detach().float().clone())
        self.register_buffer("A0", a0.detach().float().clone())
        self.register_buffer("B0", b0.detach().float().clone())

    def block_delta_weight(self, deployed: bool = True, quarantine: bool = True) -> Tensor:
        """The dense weight delta B A - B0 A0 ([d_out, d_in], fp32) of the chosen blocks."""
        slots = _slots(self.r, deployed, quarantine)
        return self.B[:, slots] @ self.A[slots] - self.B0[:, slots] @ self.A0[slots]


def _root_sum(squares: list[Tensor]) -> float:
    if not squares:
        return 0.0
    device = squares[0].device  # modules may sit on several devices
    return torch.stack([t.to(device) for t in squares]).sum().sqrt().item()


def _slots(r: int, deployed: bool, quarantine: bool) -> slice:
    if deployed and quarantine:
        return slice(0, 2 * r)
    if deployed:
        return slice(0, r)
    if quarantine:
        return slice(r, 2 * r)
    raise ValueError("select at least one block")
