"""Which CPU kernels torch computes with, and a fingerprint of the numbers they give.

A seeded CPU run is deterministic only where every float operation sums in the same order. torch
picks its vectorised kernels by what the CPU offers (AVX2, AVX512, ...), and MKL, which does its
matrix multiplies, picks a code path the same way (and differently on Intel and AMD CPUs). So the
same recipe, seed and thread count give other last bits on another kind of CPU: the toy base
trains to other weights and a run samples other rollouts (another draw of the same experiment).

`VGROUT_CPU_KERNELS` chooses:
  native    (default) torch's and MKL's fastest paths for this CPU; numbers re-run bit for bit on
            CPUs of the same kind only.
  portable  torch's baseline x86-64 kernels (`ATEN_CPU_CAPABILITY=default`: the same compiled
            code whatever the CPU offers) and MKL's conditional-numerical-reproducibility branch
            `MKL_CBWR=COMPATIBLE` (SSE2 without approximate instructions, which MKL documents as
            giving the same results on Intel and non-Intel CPUs). Slower; meant for tables that
            others re-run. The toy base built this way has its own cache (`vgrout.toy.cache`).

Both variables are read once, when torch and MKL first compute, so `apply()` must run before
that: the `vgrout` command calls it first; a Python user calls it before importing torch.
`vgrout kernels` prints the active kernels and `fingerprint()`, a hash of a small seeded
forward, backward and sampling pass through the operations the toy uses: a quick check (not a
proof) that two machines compute them to the same bits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import MutableMapping

ENV = "VGROUT_CPU_KERNELS"
MODES = ("native", "portable")
PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}

# mkl_cbwr_get(MKL_CBWR_BRANCH) return values, from MKL's mkl_service.h
_MKL_BRANCHES = {
    1: "off",
    2: "auto",
    3: "compatible",
    4: "sse2",
    6: "ssse3",
    7: "sse4_1",
    8: "sse4_2",
    9: "avx",
    10: "avx2",
    12: "avx512",
    14: "avx512_e1",
}


def requested(environ: MutableMapping[str, str] | None = None) -> str:
    """The mode `VGROUT_CPU_KERNELS` asks for (`native` when unset)."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV, "").strip().lower() or "native"
    if value not in MODES:
        raise ValueError(
            f"{ENV}={environ.get(ENV)!r} is not a kernel mode; use one of {', '.join(MODES)} "
            "(or leave it unset for native)"
        )
    return value


def apply(environ: MutableMapping[str, str] | None = None) -> str:
    """Set the variables the requested mode needs; returns the mode. Refuses a conflicting
    setting (e.g. `ATEN_CPU_CAPABILITY=avx2` with portable) rather than overriding it."""
    environ = os.environ if environ is None else environ
    mode = requested(environ)
    if mode == "portable":
        for name, value in PORTABLE.items():
            current = environ.get(name)
            if current is not None and current.strip().lower() != value.lower():
                raise ValueError(
                    f"{ENV}=portable needs {name}={value}, but the environment sets "
                    f"{name}={current}; unset {name} or use {ENV}=native"
                )
            environ[name] = value
    return mode


def environment() -> dict[str, str]:
    """The variables a worker process needs to compute like this one (e.g. for Ray's
    `runtime_env`, whose workers do not inherit the driver's environment)."""
    mode = requested()
    return {ENV: mode, **(PORTABLE if mode == "portable" else {})}


def mkl_branch() -> str | None:
    """MKL's active reproducibility branch (`off` = torch's default dispatch), or None where torch
    carries no MKL (e.g. ARM builds) or does not export its service functions."""
    import ctypes

    import torch

    lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        get = ctypes.CDLL(lib).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    value = get(1)  # MKL_CBWR_BRANCH
    return _MKL_BRANCHES.get(value, str(value))


def state() -> dict:
    """The kernels this process computes with: the requested mode, torch's CPU capability and
    MKL's branch (all three are recorded in each run's provenance.json)."""
    import torch

    return {
        "kernels": requested(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_branch": mkl_branch(),
    }


def verify() -> dict:
    """`state()`, after checking that a requested portable mode is really in effect (it is not
    when torch computed before `apply()` ran, or the variables were changed afterwards)."""
    now = state()
    if now["kernels"] == "portable":
        wrong = []
        if now["capability"] != "DEFAULT":
            wrong.append(f"torch dispatches to {now['capability']} kernels, not DEFAULT")
        if now["mkl_branch"] not in (None, "compatible"):
            wrong.append(f"MKL's branch is {now['mkl_branch']}, not compatible")
        if wrong:
            raise RuntimeError(
                f"{ENV}=portable is not in effect: {'; '.join(wrong)}. The variables are read "
                "when torch first computes: set VGROUT_CPU_KERNELS in the shell before starting "
                "Python, or call vgrout.kernels.apply() before importing torch."
            )
    return now


def recorded(provenance: dict) -> str:
    """The kernel mode a run's provenance.json records (`native` for runs made before the field)."""
    return (provenance.get("cpu") or {}).get("kernels", "native")


def fingerprint() -> str:
    """Hash of a small seeded Qwen3-shaped forward, backward and sampling pass on one thread.

    It covers the toy's operations (matrix multiplies, RMSNorm, rotary embeddings, attention,
    SiLU, softmax, log-softmax, multinomial sampling). Weights come from a seeded generator, not
    from transformers' initialisation, so only the computation decides the hash (for one torch
    and transformers version: new versions may compute in another order)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    config._attn_implementation = "sdpa"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        with torch.device("cpu"):
            model = Qwen3ForCausalLM(config).float()
        with torch.no_grad():
            for _, p in sorted(model.named_parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        ids = torch.randint(0, config.vocab_size, (4, 48), generator=g)
        out = model(ids, labels=ids)
        out.loss.backward()
        grads = [p.grad for _, p in sorted(model.named_parameters()) if p.grad is not None]
        with torch.no_grad():
            probs = torch.softmax(out.logits[:, -1].float() / 0.7, dim=-1)
            draws = torch.multinomial(probs, 8, replacement=True, generator=g)
        digest = hashlib.sha256()
        for t in [out.logits.detach(), out.loss.detach(), *grads, draws]:
            digest.update(t.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]
    finally:
        torch.set_num_threads(threads)
