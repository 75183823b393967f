"""What a BlockLoRA adapts and how: `AdapterConfig` and the discovery of the target modules
(torch Linear or GPT-2 Conv1D, never lm_head or the embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

from vgrout.adapters.inits import INITS

__all__ = ["DEFAULT_TARGETS", "AdapterConfig", "find_targets"]

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_NEVER_TARGET = ("lm_head", "embed_tokens", "wte", "wpe", "embed_in", "embed_out")


@dataclass(frozen=True)
class AdapterConfig:
    """What to adapt and how to initialise it.

    r: rank of EACH block (the adapter has rank 2r: deployed [:r], quarantine [r:]).
    targets: last name components of the modules to adapt (nn.Linear, or HF GPT-2 Conv1D).
    init: gaussian | pissa | corda | scorda | scorda_rev (corda/scorda* need calibration data).
    init_seed: seed of the gaussian init (per-module seeds derive from it and the module name).
    decay_to_init: rate lambda of the decay toward init, p <- p - lr * lambda * (p - p0), applied
        after each optimizer step by `BlockLoRA.decay_toward_init` (not by the optimizer: plain
        weight decay pulls toward 0, which would make the net delta -B0 A0).
    """

    r: int = 8
    targets: tuple[str, ...] = DEFAULT_TARGETS
    init: str = "gaussian"
    init_seed: int = 0
    decay_to_init: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"r must be a positive int (rank of each block), got {self.r!r}")
        if isinstance(self.targets, str) or not self.targets:
            raise ValueError(f"targets must be a non-empty tuple of names, got {self.targets!r}")
        object.__setattr__(self, "targets", tuple(self.targets))
        bad = [t for t in self.targets if t in _NEVER_TARGET]
        if bad:
            raise ValueError(f"never adapt {bad}: lm_head and embeddings stay base weights")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {INITS}")
        if self.decay_to_init < 0:
            raise ValueError(f"decay_to_init must be >= 0, got {self.decay_to_init}")

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (for checkpoint headers and run configs)."""
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> AdapterConfig:
        """Inverse of `to_json_dict`."""
        d = dict(d)
        d["targets"] = tuple(d["targets"])
        return cls(**d)


# ------------------------------------------------------------------------------------------------
# Target discovery


def _is_conv1d(module: nn.Module) -> bool:
    # HF GPT-2's Conv1D: y = x @ W + b with W [d_in, d_out]. Matched by class name so that no
    # particular transformers import path is required.
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def find_targets(model: nn.Module, targets: Sequence[str]) -> dict[str, nn.Module]:
    """Modules whose last name component is in `targets`, by full name (sorted).

    Supported module types: torch.nn.Linear and transformers' Conv1D (GPT-2). A matching name on
    any other type raises, as does a target list that matches nothing.
    """
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in targets:
            continue
        if any(part in _NEVER_TARGET for part in name.split(".")):
            continue
        if not (isinstance(module, nn.Linear) or _is_conv1d(module)):
            raise TypeError(
                f"module {name!r} matches a target name but is a {type(module).__name__}; "
                "BlockLoRA supports torch.nn.Linear and transformers Conv1D only: "
                "remove this name from AdapterConfig.targets"
            )
        found[name] = module
    if not found:
        linear_names = sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, m in model.named_modules()
                if isinstance(m, nn.Linear) or _is_conv1d(m)
            }
        )
        raise ValueError(
            f"no module matches targets {tuple(targets)}; this model's Linear/Conv1D names are "
            f"{linear_names} (e.g. GPT-2 uses c_attn, c_proj, c_fc)"
        )
    return dict(sorted(found.items()))


def _weight_out_in(module: nn.Module) -> Tensor:
    """The module's weight as [d_out, d_in] (Conv1D stores [d_in, d_out])."""
    return module.weight.T if _is_conv1d(module) else module.weight
