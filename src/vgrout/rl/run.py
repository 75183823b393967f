"""A training run's objects, built from its config: environment, policy (model + adapter),
teacher, router and optimizer; and the check that a run folder belongs to the base weights loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from vgrout.adapters import AdapterConfig, attach, calibrate
from vgrout.config import TrainConfig
from vgrout.rl import components
from vgrout.rl.policy import Policy
from vgrout.routing.router import Router
from vgrout.runfolder import (
    RunFolder,
    base_weights_mismatch,
    check_kernels,
    local_weights_sha256,
)


@dataclass
class Run:
    cfg: TrainConfig
    folder: RunFolder
    env: components.Environment
    policy: Policy
    teacher: object
    router: Router
    opt: torch.optim.Optimizer


def build_run(cfg: TrainConfig, out: Path) -> Run:
    cfg.validate()
    torch.manual_seed(cfg.seed)
    device, dtype = components.pick_device(cfg)
    env = components.load_environment(cfg)
    model, tokenizer, render = components.load_model(cfg, device, dtype)
    check_base(out, model)
    pairs = (
        components.load_pairs(cfg)
        if (cfg.scores_rollouts or cfg.init in ("corda", "scorda", "scorda_rev"))
        else None
    )
    calibration = None
    if cfg.init in ("corda", "scorda", "scorda_rev"):
        rendered = [
            SimpleNamespace(prompt=render(tokenizer, p.prompt), hack=p.hack, clean=p.clean)
            for p in pairs
        ]
        calibration = calibrate(model, tokenizer, rendered, cfg.targets, add_special_tokens=False)
    adapter = attach(
        model,
        AdapterConfig(r=cfg.rank, targets=cfg.targets, init=cfg.init, init_seed=cfg.seed),
        calibration,
    )
    policy = Policy(model, tokenizer, adapter, render, device)
    teacher = components.load_teacher(cfg, env)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
    router = Router(cfg, policy, pairs)
    return Run(cfg, RunFolder(out), env, policy, teacher, router, opt)


def base_identity(model) -> dict:
    """Which base weights a run's adapter belongs to: the toy base's cache folder is named by the
    hash of its recipe, corpus and code, so a changed recipe gives a different name; a locally
    built base's weights hash (`weights_sha256`) tells the same recipe built on another machine."""
    ident = {"name_or_path": str(model.name_or_path)}
    sha = local_weights_sha256(model.name_or_path)
    if sha:
        ident["weights_sha256"] = sha
    return ident


def check_base(out: Path, model) -> None:
    """Refuse to resume or evaluate a run on other base weights than it was trained on (an
    adapter loads silently onto any base of the same shape). A base.json written before weights
    were hashed is checked by name only."""
    check_kernels(out)
    recorded = Path(out) / "base.json"
    if not recorded.is_file():
        return
    was, now = json.loads(recorded.read_text())["name_or_path"], str(model.name_or_path)
    if was != now:
        raise ValueError(
            f"{out} was trained on base {was} but this checkout loads "
            f"{now} (for the toy: its recipe or vgrout.toy code changed). "
            "Use the commit the run was made with, or start a new run."
        )
    mismatch = base_weights_mismatch(out, model.name_or_path)
    if mismatch:
        raise ValueError(
            f"{out} was trained on base weights {mismatch[0]} but {now} here "
            f"holds {mismatch[1]}: the same toy recipe built on another machine (other CPU kernels "
            "or library versions round differently). Copy the run's base folder along with the "
            "run, or start a new run."
        )
