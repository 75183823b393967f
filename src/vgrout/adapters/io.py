"""Adapter checkpoints: one safetensors file per save.

Tensors: `A/<module>`, `B/<module>`, `A0/<module>`, `B0/<module>` in float32 (the adapter is small;
saving exactly avoids the bf16 round-off the predecessor had to tolerate on reload). Header
metadata: `vgrout_format` (version), `adapter_config` (AdapterConfig JSON), `module_names` (JSON
list) and `meta` (the caller's JSON-serialisable dict: step, metrics, run config...).
Attaching a saved adapter to a fresh model is `blocklora.load_adapter` (`BlockLoRA.load_into`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vgrout.adapters.parameters import ModuleAdapter
from vgrout.adapters.targets import AdapterConfig

__all__ = [
    "FORMAT_VERSION",
    "AdapterHandle",
    "load_state",
    "read_header",
    "read_meta",
    "save_adapter",
]

FORMAT_VERSION = "1"
_KINDS = ("A", "B", "A0", "B0")


class AdapterHandle(Protocol):
    """What a save or load reads and writes of a `BlockLoRA` handle (`blocklora` builds on this
    module, so the handle's class is not imported here)."""

    config: AdapterConfig
    module_names: list[str]
    adapters: dict[str, ModuleAdapter]


def save_adapter(handle: AdapterHandle, path: str | Path, meta: Mapping[str, Any]) -> None:
    """Write the handle's tensors, config and `meta` to `path` (parent folders are created)."""
    try:
        meta_json = json.dumps(dict(meta))
    except TypeError as err:
        raise TypeError(f"adapter meta must be JSON-serialisable: {err}") from err
    tensors = {}
    for name in handle.module_names:
        ad = handle.adapters[name]
        for kind in _KINDS:
            tensors[f"{kind}/{name}"] = getattr(ad, kind).detach().float().cpu().contiguous()
    header = {
        "vgrout_format": FORMAT_VERSION,
        "adapter_config": json.dumps(handle.config.to_json_dict()),
        "module_names": json.dumps(handle.module_names),
        "meta": meta_json,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)


def read_header(path: str | Path) -> dict[str, Any]:
    """The decoded header: {"adapter_config": dict, "module_names": list, "meta": dict}."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    if raw.get("vgrout_format") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not a vgrout adapter file of format {FORMAT_VERSION} "
            f"(found format {raw.get('vgrout_format')!r})"
        )
    return {
        "adapter_config": json.loads(raw["adapter_config"]),
        "module_names": json.loads(raw["module_names"]),
        "meta": json.loads(raw["meta"]),
    }


def read_meta(path: str | Path) -> dict[str, Any]:
    """The caller's `meta` dict stored by `save`."""
    return read_header(path)["meta"]


def load_state(handle: AdapterHandle, path: str | Path) -> dict[str, Any]:
    """Copy A, B, A0, B0 from `path` into an existing handle in place (resuming a run: the
    optimizer keeps pointing at the same parameters). Returns the stored `meta`."""
    header = read_header(path)
    saved_config = header["adapter_config"]
    if (
        header["module_names"] != handle.module_names
        or saved_config != handle.config.to_json_dict()
    ):
        raise ValueError(
            f"{path} holds a different adapter: saved config {saved_config}, this handle "
            f"{handle.config.to_json_dict()} (modules must match too); use load_into on a fresh model"
        )
    _copy_into(handle, _read_tensors(path), _KINDS, path)
    return header["meta"]


def _read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118


@torch.no_grad()
def _copy_into(handle: AdapterHandle, tensors: dict, kinds: tuple[str, ...], path) -> None:
    for name in handle.module_names:
        ad = handle.adapters[name]
        for kind in kinds:
            saved = tensors[f"{kind}/{name}"]
            target = getattr(ad, kind)
            if saved.shape != target.shape:
                raise ValueError(
                    f"{path}: {kind}/{name} has shape {tuple(saved.shape)}, "
                    f"the adapter {tuple(target.shape)}"
                )
            target.copy_(saved)
