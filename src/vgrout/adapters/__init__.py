"""Block-split LoRA adapters for gradient routing (deployed block [:r], quarantine block [r:]).

Typical use::

    from vgrout.adapters import AdapterConfig, attach
    lora = attach(model, AdapterConfig(r=8, init="gaussian"))
    opt = torch.optim.AdamW(lora.parameters(), lr=1e-4, weight_decay=0.0)
    with lora.route(m, d):            # per-rollout masks, one row per rollout
        loss = grpo_loss(model(ids).logits, ...)
    loss.backward(); opt.step(); lora.decay_toward_init(lr=1e-4)
    with lora.ablated():              # the deployed model (quarantine off)
        ...
    with lora.disabled():             # the base model (KL reference)
        ...

See `blocklora` for the semantics and the handle, `targets` for the config and which modules are
adapted, `parameters` for one module's A, B, A0, B0, `hooks` for the forward, `inits` for the init
schemes, `calibration` for the data the contrastive inits read, and `io` for checkpoints.
"""

from vgrout.adapters.blocklora import BlockLoRA, attach, load_adapter
from vgrout.adapters.calibration import Calibration, calibrate, completion_token_ids
from vgrout.adapters.hooks import Capture, Probe, validate_route
from vgrout.adapters.inits import INITS
from vgrout.adapters.io import read_meta
from vgrout.adapters.parameters import ModuleAdapter
from vgrout.adapters.targets import DEFAULT_TARGETS, AdapterConfig, find_targets

__all__ = [
    "DEFAULT_TARGETS",
    "INITS",
    "AdapterConfig",
    "BlockLoRA",
    "Calibration",
    "Capture",
    "ModuleAdapter",
    "Probe",
    "attach",
    "calibrate",
    "completion_token_ids",
    "find_targets",
    "load_adapter",
    "read_meta",
    "validate_route",
]
