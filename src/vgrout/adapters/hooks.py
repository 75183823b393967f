"""The per-module forward of a BlockLoRA: the fused delta, route masks, c-probe and capture.

`_make_hook` builds the forward hook of one adapted module. It reads one shared `_State` (owned by
the `BlockLoRA` handle and set only by its context managers) and adds `_BlockDelta` to the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgrout.adapters.parameters import ModuleAdapter

__all__ = ["Capture", "Probe", "validate_route"]


class _BlockDelta(torch.autograd.Function):
    """The adapter delta in one autograd node (6 matmuls instead of 10 for forward+backward).

    Inputs (all in the activation dtype; the optional ones may be None), k = number of slots:
        x [.., d_in]; a, a0 [k, d_in]; b, b0 [d_out, k];
        c [G, 1.., k]      c-probe scale (value 1), multiplies h = A x ([G, T, k] if masked);
        scale [G, 1.., k]  forward scale per rollout and slot (0 drops the quarantine: m = 0);
        keep [G, 1.., k]   parameter-gradient mask per rollout and slot (0 on the deployed slots
                           for d = 1); it never touches the gradient to x or c.
    Forward: delta = B (s * c * (A x)) - B0 (s * (A0 x)), where s = scale.
    The backward is the exact gradient of that formula, except that the rows of dL/dA and dL/dB
    are weighted by `keep` before the sum over rollouts and tokens.
    """

    @staticmethod
    def forward(ctx, x, a, b, a0, b0, c, scale, keep):  # noqa: D102
        k = a.shape[0]
        a_both = torch.cat([a, a0])  # one matmul reads both h = A x and h0 = A0 x
        hh = F.linear(x, a_both)
        h, h0 = hh[..., :k], hh[..., k:]
        hs = h if c is None else h * c
        if scale is not None:
            hs, h0 = hs * scale, h0 * scale
        if c is not None or scale is not None:
            hh = torch.cat([hs, h0], -1)
        out = F.linear(hh, torch.cat([b, -b0], 1))
        ctx.save_for_backward(x, a_both, b, b0, h, hs, c, scale, keep)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, a_both, b, b0, h, hs, c, scale, keep = ctx.saved_tensors
        k = b.shape[1]
        g_hh = grad_out @ torch.cat([b, -b0], 1)  # gradient w.r.t. [hs, h0 * scale]
        if scale is not None:
            g_hh = g_hh * torch.cat([scale, scale], -1)
        grad_b = grad_a = grad_c = None
        if ctx.needs_input_grad[2]:
            hs_kept = hs if keep is None else hs * keep
            grad_b = _rows(grad_out).T @ _rows(hs_kept)
        if c is not None:
            g_hc = g_hh[..., :k]
            if ctx.needs_input_grad[5]:  # sum over the dims c broadcasts along (tokens)
                dims = tuple(i for i in range(1, h.dim() - 1) if c.shape[i] == 1)
                grad_c = (g_hc * h).sum(dim=dims, keepdim=True) if dims else g_hc * h
            g_hh = torch.cat([g_hc * c, g_hh[..., k:]], -1)
        if ctx.needs_input_grad[1]:
            g_h = g_hh[..., :k] if keep is None else g_hh[..., :k] * keep
            grad_a = _rows(g_h).T @ _rows(x)
        grad_x = g_hh @ a_both if ctx.needs_input_grad[0] else None
        return grad_x, grad_a, grad_b, None, None, grad_c, None, None


def _rows(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


# ------------------------------------------------------------------------------------------------
# Run-time state, probes and captures


def validate_route(m: Any, d: Any) -> tuple[Tensor, Tensor]:
    """Check a per-rollout mask and return it as two fp32 vectors [G].

    m, d: length-G sequences/tensors of 0/1 (bool ok). Raises on shape mismatch, values other than
    0/1, or any rollout with (m, d) = (0, 1) (it would train nothing; the rule is d => m).
    """
    m_t = torch.as_tensor(m).detach().float().flatten().cpu()
    d_t = torch.as_tensor(d).detach().float().flatten().cpu()
    if m_t.shape != d_t.shape or m_t.numel() == 0:
        raise ValueError(
            f"m and d must be non-empty with equal length, got {m_t.shape}, {d_t.shape}"
        )
    for label, t in (("m", m_t), ("d", d_t)):
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"route mask {label} must contain only 0/1, got {t.tolist()}")
    dead = ((m_t == 0) & (d_t == 1)).nonzero().flatten().tolist()
    if dead:
        raise ValueError(
            f"rollouts {dead} have (m, d) = (0, 1): no block would train and the forward would "
            "be ablated. The rule is d => m: route with (1, 1) (rout) or (0, 0) (keep)."
        )
    return m_t, d_t


class _Route:
    """Per-rollout masks converted lazily to slot vectors of the activation's device/dtype."""

    def __init__(self, m: Tensor, d: Tensor, r: int) -> None:
        self.m, self.d, self.r = m, d, r
        self.num_rollouts = m.numel()
        self.drops_quarantine = bool((m == 0).any())
        self.stops_deployed = bool((d == 1).any())
        self._cache: dict[tuple, tuple[Tensor | None, Tensor | None]] = {}

    def slot_masks(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(forward scale, parameter-grad keep), each [G, 1.., 2r] or None when all-ones."""
        if x.shape[0] != self.num_rollouts:
            raise ValueError(
                f"route mask has G={self.num_rollouts} rollouts but the batch has {x.shape[0]} "
                "rows; masks index batch rows (one row per rollout, batch dimension first)"
            )
        key = (x.device, x.dtype, x.dim())
        if key not in self._cache:
            shape = (self.num_rollouts,) + (1,) * (x.dim() - 2) + (2 * self.r,)
            ones = torch.ones(self.num_rollouts, self.r)
            scale = keep = None
            if self.drops_quarantine:
                scale = torch.cat([ones, self.m[:, None].expand(-1, self.r)], 1)
                scale = scale.reshape(shape).to(x.device, x.dtype)
            if self.stops_deployed:
                keep = torch.cat([(1 - self.d)[:, None].expand(-1, self.r), ones], 1)
                keep = keep.reshape(shape).to(x.device, x.dtype)
            self._cache[key] = (scale, keep)
        return self._cache[key]


class Probe:
    """The c-probe: a virtual diagonal scale c = 1 (one per rollout and rank slot) between A and B.

    Inside `BlockLoRA.c_probe()`, each adapted module's forward (with grad enabled) creates a fresh
    leaf c [G, 2r] of ones and uses h = (A x) * c. Because rollouts never interact in the forward,
    one backward of sum_g loss_g gives dloss_g/dc[g] for every rollout g.

    With `token_mask` [G, T] (the forward's batch and positions), c scales h only where the mask
    is 1: h = (A x) * (1 + mask * (c - 1)), the same values, and dloss_g/dc[g] sums over the
    masked positions only (e.g. the completion's tokens, not the prompt's).
    """

    def __init__(self, module_names: Sequence[str], r: int, token_mask: Tensor | None = None):
        self.module_names = list(module_names)
        self.r = r
        self._leaves: dict[str, list[Tensor]] = {n: [] for n in self.module_names}
        if token_mask is not None and token_mask.dim() != 2:
            raise ValueError(f"token_mask must be [G, T], got shape {tuple(token_mask.shape)}")
        self.token_mask = None if token_mask is None else token_mask.detach()

    def scale(self, name: str, x: Tensor) -> Tensor:
        """A fresh leaf for module `name`'s forward of x [G, .., d], as the scale of h [G, .., 2r]."""
        c = self._leaf(name, x.shape[0], x.device)
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (2 * self.r,)
        c = c.to(x.dtype).reshape(shape)
        if self.token_mask is None:
            return c
        if x.dim() != 3 or tuple(x.shape[:2]) != tuple(self.token_mask.shape):
            raise ValueError(
                f"c-probe token_mask {tuple(self.token_mask.shape)} does not match the forward's "
                f"batch and positions {tuple(x.shape[:2])}"
            )
        mask = self.token_mask.to(x.device, x.dtype)[..., None]
        return 1 + mask * (c - 1)

    def _leaf(self, name: str, num_rows: int, device: torch.device) -> Tensor:
        c = torch.ones(num_rows, 2 * self.r, device=device, requires_grad=True)
        self._leaves[name].append(c)
        return c

    def grads(self, loss: Tensor, retain_graph: bool = False) -> Tensor:
        """dloss/dc per rollout as fp32 [G, M, 2r] (modules in sorted order; deployed = [..., :r]).

        Uses torch.autograd.grad on the probe leaves only, so parameter .grad is untouched. Expects
        exactly one grad-enabled forward per module since the last call; the leaves are consumed.
        """
        counts = {n: len(v) for n, v in self._leaves.items()}
        wrong = {n: k for n, k in counts.items() if k != 1}
        if wrong:
            raise RuntimeError(
                f"c-probe expects exactly one grad-enabled forward per module before grads(); "
                f"got {dict(list(wrong.items())[:3])} (forwards under no_grad or disabled() record "
                "nothing; call grads() after each forward)"
            )
        leaves = [self._leaves[n][0] for n in self.module_names]
        for n in self.module_names:
            self._leaves[n].clear()
        grads = torch.autograd.grad(
            loss, leaves, retain_graph=retain_graph, allow_unused=True, materialize_grads=True
        )
        return torch.stack([g.float() for g in grads], dim=1)


class Capture:
    """Deployed-block bottleneck activations A[:r] x, mean-pooled over masked tokens, per module.

    Filled inside `BlockLoRA.capture_bottleneck(token_mask)` by exactly one forward; pooling
    happens in the hook under no_grad, so no [B, T, r] tensor is kept.
    """

    def __init__(self, module_names: Sequence[str], token_mask: Tensor, r: int) -> None:
        if token_mask.dim() != 2:
            raise ValueError(f"token_mask must be [B, T], got shape {tuple(token_mask.shape)}")
        counts = token_mask.float().sum(1)
        if bool((counts == 0).any()):
            empty = (counts == 0).nonzero().flatten().tolist()
            raise ValueError(f"token_mask rows {empty} select no token; nothing to pool")
        self.module_names = list(module_names)
        self.r = r
        self._mask = token_mask.detach().float()
        self._counts = counts
        self._pooled: dict[str, Tensor] = {}

    def _record(self, name: str, x: Tensor, a_deployed: Tensor) -> None:
        if name in self._pooled:
            raise RuntimeError(
                f"capture_bottleneck saw a second forward of {name!r}; open one capture per forward"
            )
        if x.shape[:2] != self._mask.shape:
            raise ValueError(
                f"token_mask {tuple(self._mask.shape)} does not match the batch {tuple(x.shape[:2])}"
            )
        with torch.no_grad():
            mask = self._mask.to(x.device, x.dtype)
            h = F.linear(x, a_deployed.to(x.dtype))  # [B, T, r]
            pooled = torch.einsum("btr,bt->br", h, mask).float()
            self._pooled[name] = pooled / self._counts.to(pooled.device)[:, None]

    @property
    def pooled(self) -> Tensor:
        """fp32 [B, M, r] in sorted module order."""
        missing = [n for n in self.module_names if n not in self._pooled]
        if missing:
            raise RuntimeError(
                f"no forward captured for {missing[:3]}: run the model in the context"
            )
        return torch.stack([self._pooled[n] for n in self.module_names], dim=1)


class _RowQuarantine:
    """The quarantine block as an unmerged low-rank term scaled per batch row (0 or 1), for
    `BlockLoRA.merged_per_row`: B_q (A_q x) - B0_q (A0_q x), with the slot matrices concatenated
    and cast once per context instead of once per decode step."""

    def __init__(self, adapters: dict[str, ModuleAdapter], dtypes: dict, rows: Tensor) -> None:
        self.rows = rows
        self.mats = {}
        for name, ad in adapters.items():
            q = slice(ad.r, 2 * ad.r)
            a = torch.cat([ad.A[q], ad.A0[q]]).detach().to(dtypes[name])
            b = torch.cat([ad.B[:, q], -ad.B0[:, q]], 1).detach().to(dtypes[name])
            self.mats[name] = (a, b)

    def select(self, index: Tensor) -> _RowQuarantine:
        """The same term for batch rows `index` only (the matrices are shared, not copied)."""
        view = object.__new__(_RowQuarantine)
        view.rows, view.mats = self.rows[index], self.mats
        return view

    def delta(self, name: str, x: Tensor) -> Tensor:
        if x.shape[0] != self.rows.shape[0]:
            raise ValueError(
                f"merged_per_row has {self.rows.shape[0]} rows but the batch has {x.shape[0]}"
            )
        a, b = self.mats[name]
        scale = self.rows.to(x.device, x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
        return F.linear(F.linear(x, a) * scale, b)


@dataclass
class _State:
    """Everything the hooks read. Set only by BlockLoRA's context managers."""

    disabled: bool = False
    ablated: bool = False
    merged: bool = False
    rows: _RowQuarantine | None = None  # merged_per_row: the quarantine, unmerged, per row
    route: _Route | None = None
    probe: Probe | None = None
    capture: Capture | None = None
    detached: bool = field(default=False)


# ------------------------------------------------------------------------------------------------
# The hook


def _adapter_delta(x: Tensor, ad: ModuleAdapter, state: _State, name: str) -> Tensor:
    """delta(x) under the current state (route masks, ablation, c-probe)."""
    r, dt = ad.r, x.dtype
    scale = keep = c = None
    if state.route is not None:
        scale, keep = state.route.slot_masks(x)
    if state.probe is not None and torch.is_grad_enabled():
        c = state.probe.scale(name, x)
    slots = slice(0, r) if state.ablated else slice(0, 2 * r)
    if state.ablated:  # only the deployed slots run: the quarantine contributes exactly zero
        scale, keep, c = (None if t is None else t[..., slots] for t in (scale, keep, c))
        a, b, a0, b0 = ad.A[slots], ad.B[:, slots], ad.A0[slots], ad.B0[:, slots]
    else:  # no slicing: a full slice would add a copy to the backward
        a, b, a0, b0 = ad.A, ad.B, ad.A0, ad.B0
    return _BlockDelta.apply(x, a.to(dt), b.to(dt), a0.to(dt), b0.to(dt), c, scale, keep)


def _make_hook(name: str, ad: ModuleAdapter, state: _State):
    # A closure, not a bound method: copy.deepcopy(model) must not deep-copy the adapter.
    def hook(_module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        if state.merged:
            return output if state.rows is None else output + state.rows.delta(name, args[0])
        x = args[0]
        if state.capture is not None:
            state.capture._record(name, x, ad.A[: ad.r])
        if state.disabled:
            return output
        return output + _adapter_delta(x, ad, state, name)

    return hook
