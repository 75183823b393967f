"""Arm names of a sweep: the config's arms plus derived `<arm>_placebo` arms, and the one home
of the placebo seed convention (Haar seed = 1000 + training seed)."""

from __future__ import annotations

from vgrout.config import ARMS, DIRECTION_ARMS, TrainConfig
from vgrout.experiments import aggregate as agg

PLACEBO_SUFFIX = agg.PLACEBO_SUFFIX
PLACEBO_SEED_OFFSET = 1000
"""Placebo Haar seed = 1000 + training seed (sweeps and `vgrout.experiments.decision` both read it here)."""


def _takes_placebo(cfg: TrainConfig) -> bool:
    """Arms that score rollouts against a direction (a placebo direction is meaningful)."""
    return bool(getattr(cfg, "scores_rollouts", cfg.arm in DIRECTION_ARMS))


def placebo_arms() -> tuple[str, ...]:
    return tuple(a for a in ARMS if _takes_placebo(TrainConfig(arm=a)))


def derived_arms() -> dict[str, dict]:
    """Arm names beyond config.ARMS: `<arm>_placebo` -> its overrides (seed-free part)."""
    return {
        f"{a}{PLACEBO_SUFFIX}": {"arm": a, "placebo_seed": PLACEBO_SEED_OFFSET}
        for a in placebo_arms()
    }


def arm_names() -> tuple[str, ...]:
    return ARMS + tuple(derived_arms())


def arm_overrides(name: str, seed: int) -> dict:
    """Config fields an arm name stands for (a placebo arm's Haar seed follows the run seed)."""
    if name in ARMS:
        return {"arm": name}
    derived = derived_arms()
    if name not in derived:
        raise ValueError(
            f"config field arm={name!r} is invalid: choose one of {', '.join(arm_names())}"
        )
    over = dict(derived[name])
    over["placebo_seed"] += seed
    return over


def arm_label(cfg: TrainConfig) -> str:
    """The arm a run belongs to for pooling: routeV with a placebo seed is `routeV_placebo`."""
    if cfg.placebo_seed >= 0 and _takes_placebo(cfg):
        return f"{cfg.arm}{PLACEBO_SUFFIX}"
    return cfg.arm
