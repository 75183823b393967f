"""The sweep spec and its grid: parsing and typing `--grid` / `--set` / spec files, and expanding
the grids into cells (name, folder, config) in a stable order."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path

from vgrout.config import TrainConfig, parse_value
from vgrout.experiments import aggregate as agg
from vgrout.experiments.sweep.arms import arm_label, arm_overrides
from vgrout.presets import load_preset

RESERVED_FIELDS = ("preset", "notes")
"""Set by the sweep itself: `preset` comes from the spec, `notes` records the cell."""


@dataclass(frozen=True)
class SweepSpec:
    preset: str
    sets: dict
    """Fixed overrides {field: typed value} applied to every cell."""
    grids: tuple[dict, ...]
    """Each grid: {field: [typed values]} in axis order (a cartesian product)."""
    contrasts: tuple[dict, ...] = ()
    """Declared contrasts {"a": {field: typed value}, "b": {...}, "why": text}: the report pairs
    group a with group b by seed (e.g. two cells with equal trained slots, which differ in more
    than one field and so are not an automatic ablation contrast)."""

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "set": _jsonable(self.sets),
            "grids": _jsonable(list(self.grids)),
            "contrasts": _jsonable(list(self.contrasts)),
        }


@dataclass(frozen=True)
class Cell:
    name: str
    """`arm=routeV,seed=1`: the cell's grid values in axis order."""
    fields: dict
    """{field: typed value} of the cell's grid axes (arm as written: may be a derived name)."""
    arm: str
    """Arm label for pooling (`routeV_placebo` for a placebo run)."""
    folder: str
    """Folder under SWEEP_DIR/runs: readable name + short hash."""
    config: TrainConfig

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "fields": _jsonable(self.fields),
            "arm": self.arm,
            "folder": self.folder,
            "config": self.config.to_dict(),
        }


def _hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def coerce_value(field: str, value, where: str):
    """A grid/set value (CLI string or TOML/JSON value) as the field's type; errors name it."""
    hints = _hints()
    if field in RESERVED_FIELDS:
        raise ValueError(f"{where}: field {field!r} cannot be swept or set (the sweep sets it)")
    if field not in hints:
        known = ", ".join(sorted(f for f in hints if f not in RESERVED_FIELDS))
        raise ValueError(f"{where}: unknown config field {field!r}; known fields: {known}")
    if field == "arm":
        value = str(value).strip()
        arm_overrides(value, 0)  # raises with the allowed names
        return value
    return _coerce(value, hints[field], field, where)


def _coerce(value, hint, field: str, where: str):
    if isinstance(value, str):
        return parse_value(value.strip(), hint, field)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list | tuple):
        elem = typing.get_args(hint)[0]
        return tuple(_coerce(v, elem, field, where) for v in value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if (hint is dict or origin is dict) and isinstance(value, dict):
        return value
    raise ValueError(f"{where}: config field {field}: {value!r} is not a {hint}")


def split_values(text: str) -> list[str]:
    """`a,b,c` -> [a, b, c]; `x,y;z` -> [x,y ; z] (`;` separates values when present)."""
    sep = ";" if ";" in text else ","
    return [v.strip() for v in text.split(sep) if v.strip()]


def parse_grid_args(grid: list[str]) -> dict[str, list[str]]:
    """CLI `--grid field=v1,v2` strings -> {field: [values]} in the order given."""
    out: dict[str, list[str]] = {}
    for g in grid:
        if "=" not in g:
            raise ValueError(f"--grid {g!r} must look like field=value1,value2")
        k, v = g.split("=", 1)
        k = k.strip().replace("-", "_")
        if k in out:
            raise ValueError(
                f"--grid field {k!r} is given twice; list all its values in one --grid"
            )
        values = split_values(v)
        if not values:
            raise ValueError(f"--grid {g!r} lists no values")
        out[k] = values
    return out


def parse_set_args(overrides: list[str]) -> dict[str, str]:
    out = {}
    for a in overrides:
        if "=" not in a:
            raise ValueError(f"--set {a!r} must look like field=value")
        k, v = a.split("=", 1)
        out[k.strip().replace("-", "_")] = v
    return out


def make_spec(
    preset: str, grids: list[dict], sets: dict | None = None, contrasts: list | None = None
) -> SweepSpec:
    """Check and type a spec: known fields, parsable values, no field both set and swept, and
    declared contrasts whose sides each name a group of the grid."""
    load_preset(preset)  # unknown preset -> clear error
    typed_sets = {k: coerce_value(k, v, f"--set {k}") for k, v in (sets or {}).items()}
    typed_grids = []
    if not grids:
        grids = [{}]  # no grid: one cell, the preset + sets
    for i, g in enumerate(grids):
        where = "--grid" if len(grids) == 1 else f"grid {i + 1}"
        typed = {}
        for k, values in g.items():
            k = k.replace("-", "_")
            if k in typed_sets:
                raise ValueError(f"{where}: field {k!r} is both set (--set) and swept; choose one")
            if isinstance(values, str):
                values = split_values(values)
            if not isinstance(values, list | tuple) or not values:
                raise ValueError(f"{where}: field {k!r} needs a non-empty list of values")
            typed[k] = [coerce_value(k, v, f"{where} {k}") for v in values]
            if len(set(map(canonical_json, typed[k]))) != len(typed[k]):
                raise ValueError(f"{where}: field {k!r} lists a value twice: {values}")
        typed_grids.append(typed)
    spec = SweepSpec(preset, typed_sets, tuple(typed_grids))
    if contrasts:
        typed_contrasts = tuple(_typed_contrast(c, i + 1) for i, c in enumerate(contrasts))
        spec = dataclasses.replace(spec, contrasts=typed_contrasts)
        _check_contrasts(spec)
    return spec


CONTRAST_KEYS = ("a", "b", "why")
REPLICATION_FIELDS = ("seed", "placebo_seed")
"""Not grouping fields: a contrast pairs its two groups by these (a side never names them)."""


def _typed_contrast(c, number: int) -> dict:
    where = f"contrast {number}"
    if not isinstance(c, dict):
        raise ValueError(f"{where}: must be a table with keys a, b and optionally why")
    unknown = sorted(set(c) - set(CONTRAST_KEYS))
    if unknown or "a" not in c or "b" not in c:
        raise ValueError(
            f'{where}: keys are a and b (each a table of fields, e.g. a = {{ arm = "plain", '
            f"rank = 2 }}) and optionally why; got {', '.join(sorted(c))}"
        )
    out = {"why": str(c.get("why", ""))}
    for side in ("a", "b"):
        sel = c[side]
        if not isinstance(sel, dict) or not sel:
            raise ValueError(
                f'{where} {side}: a non-empty table of fields, e.g. {{ arm = "none" }}'
            )
        bad = [k for k in sel if k in REPLICATION_FIELDS]
        if bad:
            raise ValueError(
                f"{where} {side}: {bad[0]!r} cannot name a side; contrasts pair every seed"
            )
        out[side] = {k: coerce_value(k, v, f"{where} {side} {k}") for k, v in sel.items()}
    return out


def contrast_side(base: TrainConfig, spec: SweepSpec, selector: dict) -> dict:
    """A contrast side as a run-like record {"arm": label, "fields": resolved config}: the preset,
    the spec's sets and the selector's fields, every other field at its default."""
    cfg = cell_config(base, {**spec.sets, **selector})
    return {"arm": arm_label(cfg), "fields": cfg.to_dict()}


def _check_contrasts(spec: SweepSpec) -> None:
    """Each side must name a group of the grid (a typo would silently contrast nothing); groups
    are keyed as `aggregate` keys them, so a side that passes here is found there."""
    base, cells = load_preset(spec.preset), expand(spec)
    axes = agg.default_group_by({"fields": c.fields} for c in cells)

    def key(arm: str, config: dict) -> tuple:
        return agg.group_key({"arm": arm, "fields": config}, axes)

    groups = {key(c.arm, c.config.to_dict()) for c in cells}
    for i, c in enumerate(spec.contrasts, 1):
        keys = {}
        for side in ("a", "b"):
            try:
                s = contrast_side(base, spec, c[side])
            except ValueError as e:
                raise ValueError(f"contrast {i} {side}: {e}") from e
            keys[side] = key(s["arm"], s["fields"])
            if keys[side] not in groups:
                words = ", ".join(f"{k}={agg.format_value(v)}" for k, v in c[side].items())
                raise ValueError(
                    f"contrast {i} {side} ({words}) names no group of the grid: add its cells to "
                    "a grid or fix the fields"
                )
        if keys["a"] == keys["b"]:
            raise ValueError(f"contrast {i}: a and b name the same group")


def spec_from_cli(
    preset: str | None = None,
    grid: list[str] | None = None,
    overrides: list[str] | None = None,
    spec_file: Path | None = None,
) -> SweepSpec:
    """`vgrout sweep [--preset P] --grid f=a,b ... --set f=v ... [--spec FILE]`.

    Preset: `preset`, else the spec file's, else `toy` (a file and a CLI preset that disagree are an
    error). With a spec file, CLI `--set` values are added to the file's sets (CLI wins) and CLI
    `--grid` axes are allowed only if the file has no grid (two sources of one grid would be
    ambiguous)."""
    sets: dict = {}
    grids: list[dict] = []
    contrasts: list = []
    if spec_file is not None:
        data = load_spec_file(spec_file)
        file_preset = data.get("preset")
        if preset is not None and file_preset is not None and preset != file_preset:
            raise ValueError(f"--preset {preset} disagrees with {spec_file} (preset {file_preset})")
        preset = preset or file_preset
        sets.update(data.get("set", {}))
        grids = list(data.get("grids", []))
        if "grid" in data:
            grids.insert(0, data["grid"])
        contrasts = list(data.get("contrasts", []))
    cli_grid = parse_grid_args(grid or [])
    if cli_grid:
        if grids:
            raise ValueError(f"{spec_file} already defines grids; put the --grid axes in the file")
        grids = [cli_grid]
    sets.update(parse_set_args(overrides or []))
    return make_spec(preset or "toy", grids, sets, contrasts)


def load_spec_file(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"sweep spec {path} not found: pass a .toml (or .json) spec file, e.g. "
            "sweeps/main-arms.toml"
        )
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as e:  # TOMLDecodeError and JSONDecodeError both are
        raise ValueError(f"{path} is not a valid sweep spec: {e}") from e
    unknown = sorted(set(data) - {"preset", "set", "grid", "grids", "contrasts"})
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {', '.join(unknown)}; a spec has preset, set, grid, grids, "
            "contrasts"
        )
    if isinstance(data.get("set"), list):
        data["set"] = parse_set_args(data["set"])
    return data


# --------------------------------------------------------------------------------- expansion
def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of every grid (cartesian product, last axis fastest), validated up front."""
    return [cell for _, cell in expand_by_grid(spec)]


def expand_by_grid(spec: SweepSpec) -> list[tuple[int, Cell]]:
    """(index of the first grid that holds the cell, cell) for every cell, in grid order."""
    base = load_preset(spec.preset)
    cells: list[tuple[int, Cell]] = []
    seen: set[str] = set()
    for gi, grid in enumerate(spec.grids):
        axes = list(grid)
        for values in itertools.product(*(grid[a] for a in axes)):
            fields = dict(zip(axes, values, strict=True))
            cell = make_cell(base, spec, fields)
            if cell.folder not in seen:
                seen.add(cell.folder)
                cells.append((gi, cell))
    return cells


def make_cell(base: TrainConfig, spec: SweepSpec, fields: dict) -> Cell:
    name = ",".join(f"{k}={agg.format_value(v)}" for k, v in fields.items()) or "base"
    merged = {**spec.sets, **fields}
    try:
        cfg = cell_config(base, merged)
    except (ValueError, TypeError) as e:
        raise ValueError(f"sweep cell {name}: {e}") from e
    label = arm_label(cfg)
    cfg = dataclasses.replace(cfg, notes={**cfg.notes, "sweep_cell": name, "sweep_arm": label})
    return Cell(name, dict(fields), label, folder_name(name, spec.preset, merged), cfg)


def cell_config(base: TrainConfig, fields: dict) -> TrainConfig:
    """Preset + fields; an arm name expands to its fields (explicit fields win), then validate."""
    updates = dict(fields)
    arm = updates.pop("arm", None)
    cfg = dataclasses.replace(base, **updates)
    if arm is not None:
        derived = arm_overrides(arm, cfg.seed)
        for k in list(derived):
            if k != "arm" and k in fields:
                derived.pop(k)
        cfg = dataclasses.replace(cfg, **derived)
    return cfg.validate()


def folder_name(name: str, preset: str, merged: dict) -> str:
    """Readable cell name + 8 hex of the (preset, overrides) hash: stable across invocations."""
    key = json.dumps({"preset": preset, "fields": _jsonable(merged)}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._=,+-]", "-", name)[:120]
    return f"{readable}_{digest}"


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def canonical_json(x):
    """A value as canonical JSON text: hashable, equal for equal values (a tuple as its list)."""
    return json.dumps(_jsonable(x), sort_keys=True)
