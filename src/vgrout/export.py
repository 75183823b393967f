"""`vgrout export`: a run's deployed (or as-trained) model in the ecosystem's formats.

A BlockLoRA module adds `B A x - B0 A0 x` over its rank slots (deployed [:r], quarantine [r:]).
Over the chosen slots s that is exactly one ordinary LoRA of rank 2|s|:

    lora_B = [B[:, s] | -B0[:, s]]   [d_out, 2|s|]      lora_A = [A[s] ; A0[s]]   [2|s|, d_in]

written with lora_alpha = rank (scale 1), no dropout, no rsLoRA and `target_modules` = the full
names of exactly the adapted modules, so stock PEFT (`PeftModel.from_pretrained(base, DIR)`) loads
it with no vgrout code. `--merged` instead bakes `lora_B @ lora_A` into the base weights and saves
a full Hugging Face model folder (config, tokenizer, safetensors) for vLLM/TGI.

States follow `vgrout.rl.evaluate`: `deployed` drops the quarantine slots for arms that have one
(QUARANTINE_ARMS); for every other arm the whole adapter is deployed, so deployed = as-trained.
The export reads the saved adapter file and the base; it does not rebuild the trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from vgrout.adapters.io import _read_tensors, read_header
from vgrout.adapters.targets import AdapterConfig, _is_conv1d, _weight_out_in, find_targets
from vgrout.config import QUARANTINE_ARMS
from vgrout.runfolder import RunFolder, _umask, atomic_dir, code_provenance

__all__ = ["STATES", "export_run", "lora_factors", "resolve_base"]

STATES = ("deployed", "as-trained")
ADAPTER_FILE = "adapter.safetensors"


@dataclass
class Checkpoint:
    step: int
    path: Path  # the adapter file
    config: AdapterConfig
    module_names: list[str]
    tensors: dict[str, torch.Tensor]  # A/<m>, B/<m>, A0/<m>, B0/<m> (fp32)
    latest: int  # the run's latest checkpoint step


def _norm_state(state: str) -> str:
    s = state.replace("_", "-")
    if s not in STATES:
        raise ValueError(f"unknown state {state!r}: choose deployed or as-trained")
    return s


def read_run_config(run_dir: Path) -> dict:
    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json)")
    # Raw dict, not TrainConfig: a run made by another version may hold fields or arms this
    # checkout does not know, and the export needs only a few of them.
    return json.loads(folder.config.read_text())


def load_checkpoint_file(run_dir: Path, step: int | None = None) -> Checkpoint:
    """The adapter of checkpoint `step` (default: the latest)."""
    folder = RunFolder(run_dir)
    found = (
        sorted(int(p.name.split("_")[1]) for p in folder.checkpoints.glob("step_*") if p.is_dir())
        if folder.checkpoints.is_dir()
        else []
    )
    if not found:
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint (checkpoints/step_*/); train it, or finish a killed run "
            f"with `vgrout train --resume {run_dir}`"
        )
    step = found[-1] if step is None else step
    if step not in found:
        raise FileNotFoundError(f"{run_dir} has no checkpoint of step {step}; it has steps {found}")
    path = folder.checkpoint_dir(step) / ADAPTER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint of step {step} is incomplete")
    header = read_header(path)
    return Checkpoint(
        step,
        path,
        AdapterConfig.from_json_dict(header["adapter_config"]),
        header["module_names"],
        _read_tensors(path),
        found[-1],
    )


def export_slots(state: str, arm: str, r: int) -> slice:
    """Rank slots of the chosen state: the quarantine [r:] is removed only by arms that have one."""
    if _norm_state(state) == "deployed" and arm in QUARANTINE_ARMS:
        return slice(0, r)
    return slice(0, 2 * r)


def lora_factors(
    tensors: dict[str, torch.Tensor], name: str, slots: slice
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A [2k, d_in], lora_B [d_out, 2k]) with lora_B @ lora_A = B A - B0 A0 over `slots`."""
    a, b = tensors[f"A/{name}"][slots], tensors[f"B/{name}"][:, slots]
    a0, b0 = tensors[f"A0/{name}"][slots], tensors[f"B0/{name}"][:, slots]
    return torch.cat([a, a0], 0).contiguous(), torch.cat([b, -b0], 1).contiguous()


# ------------------------------------------------------------------------------------- the base
def _toy_base_for(run_cfg: dict) -> Path:
    """The toy base folder this checkout builds for the run's recipe (its name is the hash of
    the recipe, corpus and toy code), without building it."""
    from vgrout.rl.components import toy_recipe
    from vgrout.toy.cache import base_folder

    return base_folder(toy_recipe(run_cfg.get("toy_recipe", "default")))


def _recorded_base(run_dir: Path) -> str | None:
    recorded = Path(run_dir) / "base.json"
    return json.loads(recorded.read_text())["name_or_path"] if recorded.is_file() else None


def _check_base_weights(run_dir: Path, base: str) -> None:
    """Refuse a base whose weights differ from those the run recorded (base.json)."""
    from vgrout.runfolder import base_weights_mismatch, check_kernels

    mismatch = base_weights_mismatch(run_dir, base)
    if mismatch:
        why = "the same toy recipe built on another machine rounds differently. Pass"
        try:
            check_kernels(run_dir)
        except ValueError as e:  # the usual reason here: the other mode's toy base was found
            why = f"{e}; or pass"
        raise ValueError(
            f"the run was trained on base weights {mismatch[0]} (base.json) but {base} holds "
            f"{mismatch[1]}: {why} --base PATH to a copy of the run's own base folder"
        )


def resolve_base(run_dir: Path, run_cfg: dict, override: str | None = None) -> str:
    """The base model the run's adapter belongs to: `override`, else the folder or hub id in the
    run's base.json, else (no base.json) the run config's model. A toy base that is gone from the
    cache is rebuilt only if this checkout builds the very same one."""
    if override:
        if not Path(override).is_dir() and Path(override).is_absolute():
            raise FileNotFoundError(f"--base {override} does not exist")
        return str(override)
    name = _recorded_base(run_dir)
    if name and Path(name).is_dir():
        return name
    if run_cfg.get("model", "toy") == "toy":
        here = _toy_base_for(run_cfg)
        if name and Path(name).name != here.name:
            raise FileNotFoundError(
                f"the run's base {name} (base.json) is gone and this checkout builds another toy "
                f"base ({here.name}: the toy recipe or vgrout.toy code changed). Export with the "
                "commit the run was made with, or pass --base PATH to a copy of that base"
            )
        from vgrout.rl.components import toy_recipe
        from vgrout.toy.cache import toy_base

        return str(toy_base(toy_recipe(run_cfg.get("toy_recipe", "default"))))
    name = name or run_cfg["model"]
    if Path(name).is_absolute() or name.startswith((".", "~")):
        raise FileNotFoundError(
            f"the run's base {name} is not on this machine; pass --base PATH to the same weights"
        )
    return name  # a hub id: transformers resolves it (cache or download)


def _load_base_config(base: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(base)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load the base {base}: {err}; pass --base PATH to the same weights"
        ) from err


def _check_modules(ckpt: Checkpoint, model) -> dict:
    """{name: module} of the base that the adapter covers; refuses another architecture."""
    modules = find_targets(model, ckpt.config.targets)
    if list(modules) != ckpt.module_names:
        missing = sorted(set(ckpt.module_names) - set(modules))[:3]
        raise ValueError(
            f"{ckpt.path} was trained on other modules than this base has (e.g. {missing}); "
            "pass --base to the run's own base model"
        )
    r2 = 2 * ckpt.config.r
    for name, module in modules.items():
        shape = tuple(_weight_out_in(module).shape)
        a, b = ckpt.tensors[f"A/{name}"], ckpt.tensors[f"B/{name}"]
        if (b.shape[0], a.shape[1]) != shape or a.shape[0] != r2 or b.shape[1] != r2:
            raise ValueError(
                f"{name}: adapter A {tuple(a.shape)} / B {tuple(b.shape)} does not fit the base "
                f"weight {shape}; pass --base to the run's own base model"
            )
    return modules


# ------------------------------------------------------------------------------------- writers
def _write_peft(tmp: Path, ckpt: Checkpoint, slots: slice, base: str, modules: dict) -> dict:
    from peft import LoraConfig

    conv = {_is_conv1d(m) for m in modules.values()}
    if len(conv) > 1:
        raise ValueError("the adapter covers both Linear and Conv1D modules; PEFT takes one kind")
    rank = 2 * (slots.stop - slots.start)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,  # scaling = alpha / r = 1: the factors carry the whole delta
        use_rslora=False,
        lora_dropout=0.0,
        bias="none",
        fan_in_fan_out=conv.pop(),  # GPT-2 Conv1D stores W as [d_in, d_out]
        # Full names match exactly one module each (PEFT: equal, or ending in ".<name>").
        target_modules=list(ckpt.module_names),
        init_lora_weights=True,  # overwritten by the saved factors; never a base-editing init
        task_type="CAUSAL_LM",
        base_model_name_or_path=base,
    )
    config.save_pretrained(str(tmp))
    tensors = {}
    for name in ckpt.module_names:
        lora_a, lora_b = lora_factors(ckpt.tensors, name, slots)
        tensors[f"base_model.model.{name}.lora_A.weight"] = lora_a
        tensors[f"base_model.model.{name}.lora_B.weight"] = lora_b
    save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    return {"format": "peft-lora", "lora_rank": rank, "lora_alpha": rank}


@torch.no_grad()
def _write_merged(tmp: Path, ckpt: Checkpoint, slots: slice, base: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    modules = _check_modules(ckpt, model)
    for name, module in modules.items():
        lora_a, lora_b = lora_factors(ckpt.tensors, name, slots)
        delta = lora_b @ lora_a  # fp32
        delta = delta.T if _is_conv1d(module) else delta
        module.weight.add_(delta.to(module.weight.device, module.weight.dtype))
    model.save_pretrained(str(tmp))
    # Chat template inside tokenizer_config.json, as the toy saves it: read by transformers 4 and 5.
    AutoTokenizer.from_pretrained(base).save_pretrained(str(tmp), save_jinja_files=False)
    return {"format": "merged", "dtype": str(model.dtype).removeprefix("torch.")}


def code_commit() -> str:
    """The git commit of the vgrout code doing the export ("-dirty" with uncommitted changes)."""
    prov = code_provenance()
    if not prov["commit"]:
        from vgrout import __version__

        return f"unknown (vgrout {__version__}, not a git checkout)"
    return prov["commit"] + ("-dirty" if prov["dirty"] else "")


def _card(info: dict, summary: dict | None, run_cfg: dict) -> str:
    state, key = info["state"], info["state"].replace("-", "_")
    if info["arm"] in QUARANTINE_ARMS:
        what = (
            "quarantine removed (adapter slots [:r])"
            if state == "deployed"
            else "both blocks, as trained (slots [:2r])"
        )
    else:
        what = f"the whole adapter (arm {info['arm']} has no quarantine: deployed = as-trained)"
    lines = [
        f"# vgrout {info['arm']} seed {info['seed']}: {state} model",
        "",
        f"- **state**: {state}: {what}",
        f"- **arm**: {info['arm']}; **seed**: {info['seed']}; preset {run_cfg.get('preset')}, "
        f"rank r={info['r']} per block, init {run_cfg.get('init')}, {run_cfg.get('steps')} steps",
        f"- **base**: `{info['base']}`"
        + (
            f" (given with --base; the run recorded `{info['base_recorded']}`)"
            if info["base_recorded"] not in (None, info["base"])
            else ""
        ),
        f"- **run**: `{info['run_dir']}`, checkpoint of step {info['step']}",
        f"- **commit** (code that exported): `{info['commit']}`",
    ]
    if info["format"] == "peft-lora":
        lines.append(
            f"- **format**: PEFT LoRA, rank {info['lora_rank']}, lora_alpha {info['lora_alpha']} "
            f"(scale 1) on {info['modules']} modules; exact: B A - B0 A0 as one LoRA"
        )
    else:
        lines.append(
            f"- **format**: full model, delta merged into the base weights ({info['dtype']})"
        )
    lines += ["", "## Held-out evaluation (the run's final evaluation, summary.json)", ""]
    if summary is None:
        lines.append("Not evaluated: the run has no summary.json (it did not finish).")
    elif key not in summary:
        lines.append(f"Not evaluated: the run's summary.json has no {key!r} entry.")
    else:
        s = summary[key]
        lines.append(f"{state}: hack {s['hack']:.3f}, solve {s['solve']:.3f} (n = {s['n']})")
        if info["step"] != info["latest_step"]:
            lines.append(
                f"\nThese numbers are for the final checkpoint (step {info['latest_step']}), "
                f"not this export's step {info['step']}."
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- entry
def export_run(
    run_dir: str | Path,
    out: str | Path,
    state: str,
    merged: bool = False,
    step: int | None = None,
    base: str | None = None,
) -> Path:
    """Write the run's `state` model to `out` (PEFT LoRA folder, or a merged model); return `out`.

    Everything is checked before anything is written; `out` must not exist and appears only when
    complete.
    """
    run_dir, out = Path(run_dir), Path(out)
    state = _norm_state(state)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out or delete it")
    run_cfg = read_run_config(run_dir)
    ckpt = load_checkpoint_file(run_dir, step)
    arm = run_cfg.get("arm", "?")
    slots = export_slots(state, arm, ckpt.config.r)
    base_name = resolve_base(run_dir, run_cfg, base)
    _check_base_weights(run_dir, base_name)
    from transformers import AutoModelForCausalLM

    # The architecture alone (no weights, no memory) checks module names and shapes up front.
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(_load_base_config(base_name))
    modules = _check_modules(ckpt, skeleton)
    summary_path = RunFolder(run_dir).summary
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    info = {
        "run_dir": str(run_dir.resolve()),
        "state": state,
        "arm": arm,
        "seed": run_cfg.get("seed"),
        "step": ckpt.step,
        "latest_step": ckpt.latest,
        "r": ckpt.config.r,
        "slots": [slots.start, slots.stop],
        "modules": len(ckpt.module_names),
        "base": base_name,
        "base_recorded": _recorded_base(run_dir),
        "commit": code_commit(),
    }
    with atomic_dir(out) as tmp:
        if merged:
            info.update(_write_merged(tmp, ckpt, slots, base_name))
        else:
            info.update(_write_peft(tmp, ckpt, slots, base_name, modules))
        (tmp / "vgrout_export.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(_card(info, summary, run_cfg))
        for f in tmp.iterdir():  # safetensors writes 0600; an export is meant to be shared
            f.chmod(0o666 & ~_umask())
    return out
