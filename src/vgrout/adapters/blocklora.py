"""BlockLoRA: a rank-2r LoRA per targeted Linear, split into a deployed and a quarantine block.

Each targeted module gets trainable A [2r, d_in], B [d_out, 2r] and frozen copies A0, B0 of their
initial values. A forward hook adds

    delta(x) = B (A x) - B0 (A0 x),   rank slots [:r] = deployed block, [r:] = quarantine block

There are no cross terms, so the blocks are independent adapters; delta is exactly zero at init
while A x is non-zero (gradients and the c-probe are alive at step 0). Base weights are frozen.

All run-time state (route masks, ablation, disable, merge, c-probe, activation capture) lives in one
small `_State` object per handle, read by the hooks, and is only ever set by context managers, so an
exception cannot leave a mask or a flag behind.

Route semantics per rollout g (batch row g is rollout g), mask (m_g, d_g):
- m_g = 0 removes the quarantine from rollout g's forward (so also from its backward);
- d_g = 1 keeps the deployed block in the forward but gives its parameters no gradient from g.
  Only the *parameter* gradient is cut: the gradient still flows through the deployed branch to
  earlier layers, so the quarantine receives the exact gradient of the full model. (The
  predecessor detached the whole branch output, which also dropped that path.)
Zones: keep (0,0), absorb (1,0), rout (1,1); (0,1) is rejected.

The forward math, masks, c-probe and capture live in `hooks.py` (one fused autograd node per
module), the config and target discovery in `targets.py`, the per-module parameters in
`parameters.py` and the checkpoint format in `io.py`; this module holds the user-facing handle.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vgrout.adapters import io as adapter_io
from vgrout.adapters.calibration import Calibration
from vgrout.adapters.hooks import (
    Capture,
    Probe,
    _make_hook,
    _Route,
    _RowQuarantine,
    _State,
    validate_route,
)
from vgrout.adapters.inits import init_blocks, module_seed
from vgrout.adapters.parameters import ModuleAdapter, _slots
from vgrout.adapters.targets import (
    DEFAULT_TARGETS,
    AdapterConfig,
    _is_conv1d,
    _weight_out_in,
    find_targets,
)

__all__ = [
    "DEFAULT_TARGETS",
    "AdapterConfig",
    "BlockLoRA",
    "Capture",
    "ModuleAdapter",
    "Probe",
    "attach",
    "find_targets",
    "load_adapter",
    "validate_route",
]


def _root_sum(squares: list[Tensor]) -> float:
    if not squares:
        return 0.0
    device = squares[0].device  # modules may sit on several devices
    return torch.stack([t.to(device) for t in squares]).sum().sqrt().item()


# ------------------------------------------------------------------------------------------------
# The handle


class BlockLoRA:
    """Handle of a BlockLoRA attached to a model (returned by `attach` / `BlockLoRA.load_into`).

    Attributes:
        model: the adapted model (its base weights frozen, hooks registered).
        config: the AdapterConfig.
        r: rank of each block.
        module_names: sorted full names of the adapted modules; the order of every [.., M, ..]
            direction/probe/capture tensor.
        adapters: {module name: ModuleAdapter} with A, B, A0, B0.
    """

    def __init__(
        self, model: nn.Module, config: AdapterConfig, blocks: Mapping[str, tuple]
    ) -> None:
        if getattr(model, "_vgrout_blocklora", None) is not None:
            raise RuntimeError("this model already has a BlockLoRA attached; call detach() first")
        self.model = model
        self.config = config
        self.r = config.r
        modules = find_targets(model, config.targets)
        if set(blocks) != set(modules):
            raise ValueError("internal: init blocks do not cover the target modules")
        for name, module in modules.items():  # check everything before touching the model
            a0, b0 = blocks[name]
            d_out, d_in = _weight_out_in(module).shape
            if tuple(a0.shape) != (2 * self.r, d_in) or tuple(b0.shape) != (d_out, 2 * self.r):
                raise ValueError(
                    f"{name}: A0 {tuple(a0.shape)} / B0 {tuple(b0.shape)} do not fit a "
                    f"{d_out}x{d_in} weight at r={self.r} (different architecture?)"
                )
        self.module_names: list[str] = list(modules)
        self._modules = modules
        self._state = _State()
        self._requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(False)
        self.adapters: dict[str, ModuleAdapter] = {}
        self._hooks = []
        for name, module in modules.items():
            ad = ModuleAdapter(*blocks[name], self.r).to(module.weight.device)
            self.adapters[name] = ad
            self._hooks.append(module.register_forward_hook(_make_hook(name, ad, self._state)))
        model._vgrout_blocklora = self

    # -- parameters ------------------------------------------------------------------------------

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters [A, B] per module, in sorted module order (for the optimizer)."""
        return [p for n in self.module_names for p in (self.adapters[n].A, self.adapters[n].B)]

    def num_parameters(self) -> int:
        """Number of trainable scalars (both blocks)."""
        return sum(p.numel() for p in self.parameters())

    def block_grad_norms(self) -> tuple[float, float]:
        """(deployed, quarantine) L2 norms of the current .grad of A and B (0 if no grad)."""
        r = self.r
        dep: list[Tensor] = []
        quar: list[Tensor] = []
        for ad in self.adapters.values():
            if ad.A.grad is not None:
                dep.append(ad.A.grad[:r].float().square().sum())
                quar.append(ad.A.grad[r:].float().square().sum())
            if ad.B.grad is not None:
                dep.append(ad.B.grad[:, :r].float().square().sum())
                quar.append(ad.B.grad[:, r:].float().square().sum())
        return _root_sum(dep), _root_sum(quar)  # one device sync each, not one per module

    @torch.no_grad()
    def delta_norms(self) -> tuple[float, float]:
        """(deployed, quarantine) Frobenius norms of the learned weight deltas B A - B0 A0,
        root-sum-square over modules (computed via 2r x 2r Gram matrices, no dense delta)."""
        out = []
        for deployed in (True, False):
            squares = []
            for ad in self.adapters.values():
                s = _slots(self.r, deployed, not deployed)
                left = torch.cat([ad.B[:, s], -ad.B0[:, s]], 1)  # [d_out, 2k]
                right = torch.cat([ad.A[s], ad.A0[s]], 0)  # [2k, d_in]
                squares.append(torch.trace((left.T @ left) @ (right @ right.T)).clamp_min(0))
            out.append(_root_sum(squares))
        return out[0], out[1]

    @torch.no_grad()
    def decay_toward_init(self, lr: float, rate: float | None = None) -> None:
        """p <- p - lr * rate * (p - p0) for every A, B (rate defaults to config.decay_to_init).

        Call after each optimizer step with the lr that step used. Decay toward 0 would be wrong:
        it drives the net delta to -B0 A0.
        """
        rate = self.config.decay_to_init if rate is None else rate
        factor = lr * rate
        if factor == 0:
            return
        for ad in self.adapters.values():
            ad.A.lerp_(ad.A0, factor)  # A + factor (A0 - A)
            ad.B.lerp_(ad.B0, factor)

    # -- state contexts --------------------------------------------------------------------------

    def _live(self) -> None:
        if self._state.detached:
            raise RuntimeError("this BlockLoRA was detached from its model")

    def _not_merged(self, what: str) -> None:
        self._live()
        if self._state.merged:
            raise RuntimeError(f"{what} inside merged(): the merged weights bypass the hooks")

    @contextmanager
    def _set(self, **values: Any) -> Iterator[None]:
        old = {k: getattr(self._state, k) for k in values}
        for k, v in values.items():
            setattr(self._state, k, v)
        try:
            yield
        finally:
            for k, v in old.items():
                setattr(self._state, k, v)

    @contextmanager
    def route(self, m: Any, d: Any) -> Iterator[None]:
        """Per-rollout masks for the forward(s) in the body; see `validate_route`.

        Row g of the batch is rollout g. The masks shape the autograd graph built in the body, so
        the backward may run after the body (unless gradient checkpointing recomputes the forward:
        then keep the backward inside the body too).
        """
        self._not_merged("route()")
        m_t, d_t = validate_route(m, d)
        with self._set(route=_Route(m_t, d_t, self.r)):
            yield

    @contextmanager
    def ablated(self) -> Iterator[None]:
        """The deployed model: the quarantine contributes zero (exactly as if reset to its init).

        A flag read by the hooks; no parameter is edited.
        """
        self._not_merged("ablated()")
        with self._set(ablated=True):
            yield

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """The base model: the whole adapter contributes zero (the KL reference)."""
        self._not_merged("disabled()")
        with self._set(disabled=True):
            yield

    @contextmanager
    def c_probe(self, token_mask: Tensor | None = None) -> Iterator[Probe]:
        """Yield a Probe; run one forward, then `probe.grads(loss)` -> [G, M, 2r]. With
        `token_mask` [G, T] (matching the forward), only the masked positions are probed."""
        self._not_merged("c_probe()")
        probe = Probe(self.module_names, self.r, token_mask)
        with self._set(probe=probe):
            yield probe

    @contextmanager
    def capture_bottleneck(self, token_mask: Tensor) -> Iterator[Capture]:
        """Yield a Capture; after one forward, `capture.pooled` is [B, M, r]: the deployed block's
        A[:r] x mean-pooled over the positions where token_mask [B, T] is non-zero."""
        self._not_merged("capture_bottleneck()")
        capture = Capture(self.module_names, token_mask, self.r)
        with self._set(capture=capture):
            yield capture

    # -- merging ---------------------------------------------------------------------------------

    @torch.no_grad()
    def _add_delta_to_weights(
        self, modules: Mapping[str, nn.Module], with_quarantine: bool
    ) -> None:
        for name, module in modules.items():
            ad = self.adapters[name]
            delta = ad.block_delta_weight(deployed=True, quarantine=with_quarantine)
            delta = delta.T if _is_conv1d(module) else delta
            module.weight.add_(delta.to(module.weight.device, module.weight.dtype))

    @contextmanager
    def merged(self, ablate: bool, backup_device: torch.device | str | None = None):
        """Temporarily bake the delta (deployed only if `ablate`, else both blocks) into the base
        weights and bypass the hooks (fast generation). Weights are restored bit-exactly from a
        backup copy on exit (on `backup_device`, default the weights' device: this holds one copy
        of every adapted weight)."""
        self._not_merged("merged()")
        st = self._state
        active = (st.route, st.probe, st.capture)
        if any(x is not None for x in active) or st.disabled or st.ablated:
            raise RuntimeError(
                "merged() cannot be nested in route/c_probe/capture_bottleneck/disabled/ablated"
            )
        backups = {
            n: m.weight.detach().to(backup_device or m.weight.device, copy=True)
            for n, m in self._modules.items()
        }
        try:
            self._add_delta_to_weights(self._modules, with_quarantine=not ablate)
            with self._set(merged=True):
                yield
        finally:
            with torch.no_grad():
                for n, m in self._modules.items():
                    m.weight.copy_(backups[n])

    @contextmanager
    def merged_per_row(self, full_rows: Any) -> Iterator[None]:
        """One batch of mixed model states, for generation: the deployed block is baked into the
        weights as in `merged(ablate=True)`, and the quarantine runs unmerged as a low-rank term on
        the rows where `full_rows` [B] is 1 (the full model); rows with 0 are the deployed model.
        Row i of every forward in the body is batch row i."""
        rows = torch.as_tensor(full_rows).detach().float().flatten()
        if rows.numel() == 0 or not bool(((rows == 0) | (rows == 1)).all()):
            raise ValueError(f"full_rows must be a non-empty 0/1 vector, got {rows.tolist()}")
        dtypes = {n: m.weight.dtype for n, m in self._modules.items()}
        with self.merged(ablate=True):
            quarantine = _RowQuarantine(self.adapters, dtypes, rows)
            with self._set(rows=quarantine):
                yield

    @contextmanager
    def row_subset(self, index: Any) -> Iterator[None]:
        """Inside `merged_per_row`: forwards in the body are batches of the rows `index` of the
        context's batch, in that order (a prefill that runs once per distinct prompt)."""
        rows = self._state.rows
        if rows is None:
            raise RuntimeError("row_subset() needs an enclosing merged_per_row()")
        index = torch.as_tensor(index, dtype=torch.long).flatten()
        n = rows.rows.shape[0]
        if index.numel() == 0 or bool((index < 0).any()) or bool((index >= n).any()):
            raise ValueError(f"row_subset: indices must lie in [0, {n}), got {index.tolist()}")
        with self._set(rows=rows.select(index)):
            yield

    def merge_deployed_into(self) -> nn.Module:
        """A deep copy of the model with only the deployed block baked in and no adapter hooks:
        the model to serve/evaluate as "deployed". The original model is unchanged."""
        self._not_merged("merge_deployed_into()")
        # The handle must not be deep-copied along with the model (it holds the adapters).
        self.model._vgrout_blocklora = None
        try:
            clone = copy.deepcopy(self.model)
        finally:
            self.model._vgrout_blocklora = self
        modules = {n: clone.get_submodule(n) for n in self.module_names}
        for handle, module in zip(self._hooks, modules.values(), strict=True):
            module._forward_hooks.pop(handle.id, None)
        self._add_delta_to_weights(modules, with_quarantine=False)
        for n, p in clone.named_parameters():
            p.requires_grad_(self._requires_grad.get(n, True))
        return clone

    # -- lifecycle -------------------------------------------------------------------------------

    def detach(self) -> None:
        """Remove the hooks and restore the base parameters' requires_grad: the plain model."""
        if self._state.detached:
            return
        if self._state.merged:
            raise RuntimeError("detach() inside merged()")
        for h in self._hooks:
            h.remove()
        for n, p in self.model.named_parameters():
            p.requires_grad_(self._requires_grad.get(n, True))
        self.model._vgrout_blocklora = None
        self._state.detached = True

    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None) -> None:
        """Write A, B, A0, B0 of every module (fp32) + config + `meta` to one safetensors file."""
        self._live()
        adapter_io.save_adapter(self, path, meta or {})

    def load_state(self, path: str | Path) -> dict[str, Any]:
        """Copy A, B, A0, B0 saved by `save` into this handle in place (resume); returns meta."""
        self._live()
        return adapter_io.load_state(self, path)

    @classmethod
    def load_into(cls, model: nn.Module, path: str | Path) -> BlockLoRA:
        """Attach a saved adapter to a (fresh, same-architecture) model: exact A, B, A0, B0."""
        return load_adapter(model, path)

    def __repr__(self) -> str:
        return (
            f"BlockLoRA(r={self.r}, modules={len(self.module_names)}, init={self.config.init!r}, "
            f"params={self.num_parameters()})"
        )


def attach(
    model: nn.Module,
    config: AdapterConfig | None = None,
    calibration: Calibration | Mapping[str, Tensor] | None = None,
) -> BlockLoRA:
    """Freeze the model's base weights, add a BlockLoRA to every target module, return the handle.

    corda/scorda/scorda_rev need `calibration` (a Calibration from `calibrate(...)` on this base
    model, or a plain {module name: Tensor[P, d_in]} dict); gaussian/pissa ignore it. The init
    reads the weights in fp32, on their device.
    """
    config = config or AdapterConfig()
    if calibration is not None and not isinstance(calibration, Calibration):
        calibration = Calibration.from_dict(calibration)
    modules = find_targets(model, config.targets)
    blocks = {}
    for name, module in modules.items():
        weight = _weight_out_in(module).detach().float()
        deltas = None
        if calibration is not None and config.init in ("corda", "scorda", "scorda_rev"):
            deltas = calibration.for_module(name).to(weight.device)
        blocks[name] = init_blocks(
            config.init,
            weight,
            config.r,
            seed=module_seed(config.init_seed, name),
            deltas=deltas,
        )
    return BlockLoRA(model, config, blocks)


def load_adapter(model: nn.Module, path: str | Path) -> BlockLoRA:
    """Attach the saved adapter to `model` with exactly the saved A, B, A0, B0.

    The model must have the same target modules with the same shapes (a clear error otherwise).
    """
    header = adapter_io.read_header(path)
    config = AdapterConfig.from_json_dict(header["adapter_config"])
    saved_names = header["module_names"]
    modules = find_targets(model, config.targets)
    if list(modules) != saved_names:
        missing = sorted(set(saved_names) - set(modules))[:3]
        extra = sorted(set(modules) - set(saved_names))[:3]
        raise ValueError(
            f"{path} was saved for other modules: missing in model {missing}, "
            f"not in file {extra}; load it into the same architecture"
        )
    tensors = adapter_io._read_tensors(path)
    blocks = {name: (tensors[f"A0/{name}"], tensors[f"B0/{name}"]) for name in saved_names}
    handle = BlockLoRA(model, config, blocks)
    adapter_io._copy_into(handle, tensors, ("A", "B"), path)
    return handle
