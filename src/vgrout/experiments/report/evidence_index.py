"""`vgrout index docs/evidence`: one page and one table over every published sweep.

Each published folder (`vgrout report SWEEP --publish DIR`) holds a report.md and a runs.csv. Many
runs are shared between sweeps (a reference cell is copied, not re-made), and the folders come
from different draws (CPU kernels, toy base). The index says, per folder, what made it, how many
runs, which arms and seeds, which draw and which commits; `all-runs.csv` lists every distinct run
once with the folders that publish it, so one table re-runs all the evidence.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

from vgrout.experiments.report.claims import CLAIMS_MD, claims_page
from vgrout.experiments.report.common import format_number, markdown_table, seed_ranges
from vgrout.experiments.report.runs_csv import CSV_COLUMNS, RUNS_CSV
from vgrout.experiments.stats import bootstrap_ci
from vgrout.runfolder import atomic_write_text

INDEX_MD = "INDEX.md"
ALL_RUNS_CSV = "all-runs.csv"
ALL_RUNS_COLUMNS: tuple[str, ...] = (*CSV_COLUMNS, "folders")
"""runs.csv's columns, and `folders`: the published folders holding the run (`;`-separated, `.`
for the root), a run being one row equal in every runs.csv column."""
PORTABLE_SUFFIX = "-portable"


def published_folders(root: Path) -> list[Path]:
    """The root (if it holds a runs.csv) and every direct subfolder with one, sorted by name."""
    root = Path(root)
    found = [root] if (root / RUNS_CSV).is_file() else []
    return found + sorted(p for p in root.iterdir() if p.is_dir() and (p / RUNS_CSV).is_file())


def read_runs(folder: Path) -> list[dict]:
    """A published runs.csv as dicts over CSV_COLUMNS ("" for a column an older file lacks)."""
    with open(Path(folder) / RUNS_CSV, newline="") as f:
        reader = csv.DictReader(f)
        unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
        if unknown:
            raise ValueError(
                f"{folder / RUNS_CSV} has columns {sorted(unknown)} that runs.csv does not define: "
                "re-publish it with `vgrout report SWEEP --publish DIR`"
            )
        return [{c: row.get(c) or "" for c in CSV_COLUMNS} for row in reader]


def made_by(folder: Path, repo: Path) -> str:
    """The command that re-makes a folder's sweep, read from its report's `Folder: runs/NAME`
    line: `make NAME` where sweeps/NAME.toml exists (NAME-portable: under portable kernels)."""
    report = Path(folder) / "report.md"
    text = report.read_text() if report.is_file() else ""
    m = re.search(r"^Folder: `([^`]+)`", text, re.MULTILINE)
    if not m:
        return "not recorded"
    name = Path(m.group(1)).name
    portable = name.endswith(PORTABLE_SUFFIX)
    stem = name[: -len(PORTABLE_SUFFIX)] if portable else name
    if not (Path(repo) / "sweeps" / f"{stem}.toml").is_file():
        return f"sweep folder `{name}` (no spec of that name)"
    env = "VGROUT_CPU_KERNELS=portable " if portable else ""
    return f"`{env}make {stem}` (sweeps/{stem}.toml)"


def _draw(row: dict) -> tuple[str, str]:
    return row["cpu"] or "not recorded", row["base"] or "not recorded"


def _counted(counter: Counter, limit: int = 3) -> str:
    items = [f"{k} ({n})" for k, n in counter.most_common(limit)]
    more = len(counter) - limit
    return ", ".join(items) + (f", +{more} more" if more > 0 else "")


def _run_order(key: tuple) -> tuple:
    """all-runs.csv's order: by draw (base), arm, overrides, seed, commit."""
    r = dict(zip(CSV_COLUMNS, key, strict=True))
    return r["base"], r["arm"], r["overrides"], int(r["seed"]), r["commit"]


def configuration_rows(runs: list[dict]) -> list[list]:
    """Every configuration (arm, overrides) of one draw with its seeds and the mean over seeds of
    deployed hack and solve (95% percentile bootstrap over seeds) and as-trained hack, sorted by
    deployed hack. A seed made more than once (at several commits) counts once, averaged."""
    per_seed: dict[tuple, dict[int, list[dict]]] = {}
    for r in runs:
        per_seed.setdefault((r["arm"], r["overrides"]), {}).setdefault(int(r["seed"]), []).append(r)

    def means(seeds: dict[int, list[dict]], column: str) -> list[float]:
        return [sum(float(r[column]) for r in rs) / len(rs) for _, rs in sorted(seeds.items())]

    def cell(v: list[float]) -> str:
        return format_number(sum(v) / len(v), bootstrap_ci(v) if len(v) > 1 else None, 3)

    rows = []
    for (arm, overrides), seeds in per_seed.items():
        hack, solve = means(seeds, "deployed_hack"), means(seeds, "deployed_solve")
        trained = means(seeds, "as_trained_hack")
        rows.append(
            (
                sum(hack) / len(hack),
                [
                    arm,
                    overrides or "(defaults)",
                    seed_ranges(seeds),
                    cell(hack),
                    cell(solve),
                    format_number(sum(trained) / len(trained), digits=3),
                ],
            )
        )
    return [row for _, row in sorted(rows, key=lambda x: (x[0], x[1][0], x[1][1]))]


def repo_of(root: Path) -> Path:
    """The checkout a published folder lives in: the nearest folder above it holding sweeps/."""
    for parent in Path(root).resolve().parents:
        if (parent / "sweeps").is_dir():
            return parent
    return Path.cwd()


def _shown(root: Path, repo: Path) -> str:
    """`root` as the command is typed from the checkout (the same text wherever it was run)."""
    try:
        return Path(root).resolve().relative_to(Path(repo).resolve()).as_posix()
    except ValueError:
        return Path(root).name


def evidence_index(root: Path, repo: Path | None = None) -> tuple[str, str]:
    """(INDEX.md text, all-runs.csv text) over the published folders under `root`; spec files are
    looked up in `repo` (default: the checkout holding `root`)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder: pass the evidence folder, e.g. docs/evidence")
    repo = repo_of(root) if repo is None else Path(repo)
    folders = published_folders(root)
    if not folders:
        raise ValueError(f"{root} holds no published sweep (no runs.csv in it or its subfolders)")
    rows, runs, total = [], {}, 0
    for folder in folders:
        name = "." if folder == root else folder.name
        table = read_runs(folder)
        total += len(table)
        arms = list(dict.fromkeys(r["arm"] for r in table))
        draws = Counter(" / ".join(_draw(r)) for r in table)
        commits = Counter(r["commit"][:7] for r in table)
        link = f"[{name}]({'' if name == '.' else name + '/'}report.md)"
        rows.append(
            [
                link,
                made_by(folder, repo),
                len(table),
                ", ".join(arms),
                seed_ranges(r["seed"] for r in table),
                _counted(draws),
                _counted(commits),
            ]
        )
        for r in table:
            runs.setdefault(tuple(r[c] for c in CSV_COLUMNS), []).append(name)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ALL_RUNS_COLUMNS)
    for key in sorted(runs, key=_run_order):
        w.writerow([*key, ";".join(runs[key])])
    by_draw: dict[tuple[str, str], list[dict]] = {}
    draw_folders: dict[tuple[str, str], set] = {}
    for key, names in runs.items():
        r = dict(zip(CSV_COLUMNS, key, strict=True))
        draw = _draw(r)
        by_draw.setdefault(draw, []).append(r)
        draw_folders.setdefault(draw, set()).update(names)
    largest_first = sorted(by_draw.items(), key=lambda kv: -len(kv[1]))
    draw_rows = [
        [cpu, base, len(draw_runs), ", ".join(sorted(draw_folders[(cpu, base)]))]
        for (cpu, base), draw_runs in largest_first
    ]
    config_sections = []
    for (cpu, base), draw_runs in largest_first:
        if not (draw_runs[0]["cpu"] and draw_runs[0]["base"]):
            continue  # a draw that did not record its kernels and base
        config_sections += [
            f"### {cpu} kernels, toy base {base} ({len(draw_runs)} runs)",
            "",
            markdown_table(
                [
                    "arm",
                    "overrides",
                    "seeds",
                    "deployed hack [95% CI]",
                    "deployed solve [95% CI]",
                    "as-trained hack",
                ],
                configuration_rows(draw_runs),
            ),
            "",
        ]
    text = "\n".join(
        [
            "# Published evidence: an index",
            "",
            f"Generated by `vgrout index {_shown(root, repo)}` from the runs.csv of every published "
            "sweep folder here; do not edit by hand (a test checks that it is current). Each "
            "folder's report.md has its tables, intervals and contrasts; the README reads them.",
            "",
            markdown_table(
                [
                    "folder",
                    "made by",
                    "runs",
                    "arms",
                    "seeds",
                    "draw: CPU kernels / toy base (runs)",
                    "commits (runs)",
                ],
                rows,
            ),
            "",
            "## Draws",
            "",
            "A seeded CPU run re-runs bit for bit on the same vector kernels with the same toy base "
            "(the base is trained locally, so another CPU builds another one, and its runs are "
            "another draw of the experiment); `not recorded`: made before these were recorded "
            "(the earlier machine). Distinct runs per draw:",
            "",
            markdown_table(["CPU kernels", "toy base", "runs", "folders"], draw_rows),
            "",
            "## Every run once",
            "",
            f"[`{ALL_RUNS_CSV}`]({ALL_RUNS_CSV}): {len(runs)} distinct runs ({total} rows over "
            f"{len(folders)} folders; a run shared by several sweeps is listed once, `folders` "
            "naming them all). Its columns are runs.csv's: a row re-runs with `vgrout train "
            "--preset toy --arm ARM --seed SEED --threads THREADS --set OVERRIDES` (`;`-separated "
            "overrides, each its own `--set`) at `commit`, under `VGROUT_CPU_KERNELS=portable` "
            "when `cpu` is DEFAULT.",
            "",
            "## Every configuration at a glance",
            "",
            "Each configuration run in a draw that recorded its CPU kernels and toy base, pooled "
            "over every folder publishing it: the mean over seeds of the deployed model's hack "
            "and solve rates on held-out problems with a 95% percentile bootstrap over seeds, "
            "lowest deployed hack first. Configurations on different seeds are not paired here, "
            "so two rows are compared by the contrasts of the folder that runs both, not by "
            "their intervals. Draws that did not record them are left out: their runs came from "
            "several commits whose code moved the numbers.",
            "",
            *config_sections,
        ]
    )
    return text, buf.getvalue()


def write_evidence_index(root: Path, repo: Path | None = None) -> tuple[Path, ...]:
    """Write ROOT/INDEX.md, ROOT/all-runs.csv and, when ROOT/claims.toml exists, ROOT/CLAIMS.md
    (each whole; a claims file that does not check out writes nothing); returns their paths."""
    root = Path(root)
    repo = repo_of(root) if repo is None else Path(repo)
    text, table = evidence_index(root, repo)
    claims = claims_page(root, table, _shown(root, repo))  # raises before anything is written
    out = {root / INDEX_MD: text, root / ALL_RUNS_CSV: table}
    if claims is not None:
        out[root / CLAIMS_MD] = claims
    for path, content in out.items():
        atomic_write_text(path, content)
    return tuple(out)
