"""Initial values (A0, B0) of a rank-2r block adapter, one function per scheme.

Every function returns `(A0, B0)` with A0 in R^{2r x d_in} (rows = read directions) and
B0 in R^{d_out x 2r} (columns = write directions), float32, slots [:r] deployed and [r:] quarantine.
Computation is in fp32 (float64 if W is float64).
All schemes are scale-matched: A0 rows and B0 columns have unit norm (exactly for the SVD schemes,
in expectation for gaussian). Singular values are dropped on purpose: the adapter's net delta is
B A - B0 A0, so A0/B0 only set *which* directions the blocks read and write and the gradient scale.

No init ever sees a rollout label: corda/scorda read only the calibration matrix D of pooled
hack-minus-clean input shifts from authored pairs.

`W` is always given as [d_out, d_in] (a GPT-2 Conv1D weight is transposed by the caller).
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

__all__ = [
    "INITS",
    "NEEDS_CALIBRATION",
    "corda_init",
    "gaussian_init",
    "init_blocks",
    "interleave",
    "module_seed",
    "pissa_init",
    "scorda_init",
    "signed_axes",
]

INITS = ("gaussian", "pissa", "corda", "scorda", "scorda_rev")
NEEDS_CALIBRATION = frozenset({"corda", "scorda", "scorda_rev"})


def _at_least_fp32(x: Tensor) -> Tensor:
    # fp32 for bf16/fp16 weights; float64 inputs stay float64 (exact checks in tests).
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _unit_rows(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _check_rank(r: int, d_out: int, d_in: int) -> None:
    if 2 * r > min(d_out, d_in):
        raise ValueError(
            f"rank 2r={2 * r} exceeds min(d_out, d_in)={min(d_out, d_in)} of a {d_out}x{d_in} "
            "weight: the SVD inits need 2r distinct components; lower r or drop this target"
        )


def module_seed(init_seed: int, module_name: str) -> int:
    """A per-module seed from (init_seed, module name): stable across target sets and processes."""
    digest = hashlib.sha256(f"{init_seed}:{module_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def gaussian_init(d_out: int, d_in: int, r: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random Gaussian blocks: A0 ~ N(0, 1/d_in), B0 ~ N(0, 1/d_out).

    Rows of A0 and columns of B0 have unit norm in expectation, matching the SVD inits. (The
    predecessor drew B0 ~ N(0, 1/2r), whose columns have norm sqrt(d_out/2r), ~6x the SVD inits at
    Qwen3-4B scale: gradient and c-probe magnitudes were then not comparable across inits.)
    """
    gen = torch.Generator().manual_seed(seed)
    a0 = torch.randn(2 * r, d_in, generator=gen) / d_in**0.5
    b0 = torch.randn(d_out, 2 * r, generator=gen) / d_out**0.5
    return a0, b0


def interleave(a_rows: Tensor, b_cols: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """Deal 2r ranked components disjointly: even ranks -> deployed [:r], odd -> quarantine [r:].

    Both blocks then get a comparable share of the spectrum and never the same component (a shared
    basis makes the blocks identical up to magnitude: the predecessor's "shrinkage tie").
    """
    order = torch.cat([torch.arange(0, 2 * r, 2), torch.arange(1, 2 * r, 2)])
    return a_rows[order].contiguous(), b_cols[:, order].contiguous()


def pissa_init(weight: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """Top-2r singular directions of W (unit rows/cols, values dropped), interleaved disjointly."""
    d_out, d_in = weight.shape
    _check_rank(r, d_out, d_in)
    u, _s, vh = torch.linalg.svd(_at_least_fp32(weight), full_matrices=False)
    return interleave(_unit_rows(vh[: 2 * r]), _unit_rows(u[:, : 2 * r].T).T, r)


def corda_init(weight: Tensor, deltas: Tensor, r: int, eps: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Contrastive CorDA: top-2r SVD of W C^{1/2} with C = D^T D / P + a I, unwhitened, interleaved.

    a = eps * (||D||_F^2 / P) / d_in is a small ridge. C^{1/2} is applied in closed form from the
    thin SVD of D, C^{1/2} = sqrt(a) I + V diag(sqrt(a + s^2/P) - sqrt(a)) V^T, so no d_in x d_in
    matrix is ever formed. Right vectors are mapped back with C^{1/2} (read emphasis on the
    contrast directions) and unit-normalised. Beyond the first ~P components C is ~ a I, so corda
    behaves like pissa there (a known rank caveat with few pairs).
    """
    d_out, d_in = weight.shape
    _check_rank(r, d_out, d_in)
    w = _at_least_fp32(weight)
    d = deltas.to(w.dtype)
    p = d.shape[0]
    energy = (d.square().sum() / p).item()
    if energy <= 0.0:
        raise ValueError("corda: calibration deltas are all zero (hack and clean inputs identical)")
    ridge = eps * energy / d_in
    _, sv, vh_d = torch.linalg.svd(d, full_matrices=False)  # vh_d: [k, d_in]
    gain = (ridge + sv.square() / p).sqrt() - ridge**0.5  # [k]

    def times_c_half(x: Tensor) -> Tensor:  # x [n, d_in] -> x C^{1/2}
        return ridge**0.5 * x + ((x @ vh_d.T) * gain) @ vh_d

    u, _s, q = torch.linalg.svd(times_c_half(w), full_matrices=False)
    a_rows = _unit_rows(times_c_half(q[: 2 * r]))
    b_cols = _unit_rows(u[:, : 2 * r].T).T
    return interleave(a_rows, b_cols, r)


def signed_axes(weight: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """(u_in, u_out): the unit signed mean input shift and unit W u_in (where W writes it)."""
    w = _at_least_fp32(weight)
    mean = deltas.to(w.dtype).mean(0)
    if mean.norm() < 1e-12:
        raise ValueError("scorda: the mean hack-minus-clean input shift is zero; no signed axis")
    u_in = mean / mean.norm()
    w_u = w @ u_in
    if w_u.norm() < 1e-12:
        raise ValueError("scorda: W maps the hack axis u_in to zero; no output axis")
    return u_in, w_u / w_u.norm()


def _project_out(rows: Tensor, axis: Tensor) -> Tensor:
    return rows - (rows @ axis)[:, None] * axis[None, :]


def scorda_init(
    weight: Tensor, deltas: Tensor, r: int, seed_slot: int | None = None
) -> tuple[Tensor, Tensor]:
    """Signed CorDA: one slot reads u_in and writes u_out; every other slot is blind to them.

    The seed slot (default k = r, the first quarantine slot; k = 0 gives the `scorda_rev` control)
    gets A0[k] = u_in, B0[:, k] = u_out. The other 2r-1 slots take, in order, the SVD components of
    W with the u_in component removed from the right vectors and the u_out component removed from
    the left vectors, renormalised (components that are ~parallel to an axis are skipped). Layout
    is contiguous (not interleaved): deployed = SVD comps 0..r-1 (if the seed is in quarantine).
    """
    d_out, d_in = weight.shape
    _check_rank(r, d_out, d_in)
    seed_slot = r if seed_slot is None else seed_slot
    if not 0 <= seed_slot < 2 * r:
        raise ValueError(f"seed_slot must be in [0, {2 * r}), got {seed_slot}")
    w = _at_least_fp32(weight)
    u_in, u_out = signed_axes(w, deltas)
    u, _s, vh = torch.linalg.svd(w, full_matrices=False)
    a_cand = _project_out(vh, u_in)
    b_cand = _project_out(u.T, u_out)
    # A component almost parallel to an axis would be renormalised noise: skip it.
    usable = (a_cand.norm(dim=1) > 1e-3) & (b_cand.norm(dim=1) > 1e-3)
    a_cand, b_cand = _unit_rows(a_cand[usable]), _unit_rows(b_cand[usable])
    if a_cand.shape[0] < 2 * r - 1:
        raise ValueError(
            f"scorda: only {a_cand.shape[0]} usable SVD components for 2r-1={2 * r - 1}"
        )
    a0 = w.new_empty(2 * r, d_in)
    b0 = w.new_empty(d_out, 2 * r)
    cursor = 0
    for k in range(2 * r):
        if k == seed_slot:
            a0[k], b0[:, k] = u_in, u_out
        else:
            a0[k], b0[:, k] = a_cand[cursor], b_cand[cursor]
            cursor += 1
    return a0, b0


def init_blocks(
    scheme: str,
    weight: Tensor,
    r: int,
    *,
    seed: int = 0,
    deltas: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Dispatch to one scheme. `weight` is [d_out, d_in]; `deltas` is D [P, d_in] (corda/scorda)."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {INITS}")
    if scheme in NEEDS_CALIBRATION:
        if deltas is None:
            raise ValueError(
                f"init {scheme!r} needs calibration data: pass calibration=calibrate(model, "
                "tokenizer, pairs, targets) to attach()"
            )
        if deltas.shape[1] != weight.shape[1]:
            raise ValueError(
                f"calibration rows have d_in={deltas.shape[1]} but the weight has "
                f"d_in={weight.shape[1]}: was it built on a different model?"
            )
    d_out, d_in = weight.shape
    if scheme == "gaussian":
        return gaussian_init(d_out, d_in, r, seed)
    if scheme == "pissa":
        return pissa_init(weight, r)
    if scheme == "corda":
        return corda_init(weight, deltas, r)
    if scheme == "scorda":
        return scorda_init(weight, deltas, r, seed_slot=r)
    return scorda_init(weight, deltas, r, seed_slot=0)
