"""`vgrout index`: one page and one table over every published sweep folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from vgrout.experiments.report.claims import claims_page, claims_summaries
from vgrout.experiments.report.evidence_index import (
    ALL_RUNS_COLUMNS,
    configuration_rows,
    evidence_index,
    seed_ranges,
    write_evidence_index,
)
from vgrout.experiments.report.runs_csv import CSV_COLUMNS

REPO = Path(__file__).resolve().parents[1]
OLD_COLUMNS = CSV_COLUMNS[:10]  # runs.csv before cpu and base were recorded


def write_csv(path: Path, columns, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)


def row(arm, seed, commit="a" * 40, cpu="AVX512", base="6185c18ccbcc", hack="0.1"):
    return [arm, seed, "", hack, "0.7", "0.2", "0.6", "120", commit, "1", cpu, base]


@pytest.fixture
def published(tmp_path):
    """A checkout with sweeps/shared.toml and three published folders: the root (old columns),
    `shared` and `shared-portable`-made `other`, which publish one run in common."""
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "shared.toml").write_text('preset = "toy"\n')
    root = tmp_path / "docs" / "evidence"
    write_csv(root / "runs.csv", OLD_COLUMNS, [row("none", 0)[:10], row("none", 1)[:10]])
    common = row("absorb", 0)
    write_csv(root / "shared" / "runs.csv", CSV_COLUMNS, [common, row("oracle", 0)])
    (root / "shared" / "report.md").write_text("# r\n\nFolder: `runs/shared`. Preset `toy`.\n")
    write_csv(
        root / "other" / "runs.csv",
        CSV_COLUMNS,
        [common, row("absorb", 2, cpu="DEFAULT", base="481e8f63a64d"), row("absorb", 3)],
    )
    (root / "other" / "report.md").write_text("Folder: `/x/runs/shared-portable`. Preset\n")
    (root / "notes").mkdir()  # a folder without runs.csv is not a published sweep
    return root


def test_every_run_once_with_the_folders_that_publish_it(published):
    text, table = evidence_index(published)
    rows = list(csv.DictReader(io.StringIO(table)))
    assert tuple(rows[0]) == ALL_RUNS_COLUMNS
    assert len(rows) == 6  # 7 rows published, the shared absorb seed 0 once
    shared = [r for r in rows if r["arm"] == "absorb" and r["seed"] == "0"]
    assert len(shared) == 1 and shared[0]["folders"] == "other;shared"
    old = [r for r in rows if r["arm"] == "none"]
    assert [r["folders"] for r in old] == [".", "."] and old[0]["cpu"] == old[0]["base"] == ""
    assert "6 distinct runs (7 rows over 3 folders" in text


def test_index_rows_say_what_made_each_folder_and_its_draws(published):
    text, _ = evidence_index(published)
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| [")}
    assert set(lines) == {"| [.](report.md)", "| [other](other/report.md)",
                          "| [shared](shared/report.md)"}  # fmt: skip
    assert (
        "`make shared` (sweeps/shared.toml) | 2 | absorb, oracle | 0 |"
        in lines["| [shared](shared/report.md)"]
    )
    other = lines["| [other](other/report.md)"]
    assert "`VGROUT_CPU_KERNELS=portable make shared`" in other
    assert "| 0, 2-3 |" in other
    assert "AVX512 / 6185c18ccbcc (2), DEFAULT / 481e8f63a64d (1)" in other
    assert "| not recorded |" in lines["| [.](report.md)"]  # no report.md there
    assert "| not recorded | not recorded | 2 | . |" in text
    assert "| AVX512 | 6185c18ccbcc | 3 | other, shared |" in text


def test_a_report_naming_an_unknown_sweep_and_a_foreign_column(published):
    (published / "shared" / "report.md").write_text("Folder: `runs/mine`.\n")
    assert "sweep folder `mine` (no spec of that name)" in evidence_index(published)[0]
    write_csv(published / "shared" / "runs.csv", [*CSV_COLUMNS, "mood"], [[*row("x", 0), "ok"]])
    with pytest.raises(ValueError, match=r"columns \['mood'\].*re-publish"):
        evidence_index(published)


def test_nothing_published_is_refused_and_files_are_written_whole(tmp_path, published):
    with pytest.raises(ValueError, match="holds no published sweep"):
        evidence_index(tmp_path / "sweeps")
    with pytest.raises(ValueError, match="is not a folder: pass the evidence folder"):
        evidence_index(tmp_path / "nowhere")
    index, table = write_evidence_index(published)
    assert index.read_text() == evidence_index(published)[0]
    assert table.read_text() == evidence_index(published)[1]
    assert not list(published.glob(".*"))  # no temporary file left beside them


def test_every_configuration_pools_its_folders_once_per_seed(published):
    text, _ = evidence_index(published)
    section = text.split("## Every configuration at a glance")[1]
    # recorded draws only (the root's old rows are left out), largest first
    assert section.index("### AVX512 kernels, toy base 6185c18ccbcc (3 runs)") < section.index(
        "### DEFAULT kernels, toy base 481e8f63a64d (1 runs)"
    )
    assert "| none |" not in section
    # absorb seeds 0 and 3 (seed 0 published twice counts once), then oracle seed 0
    assert (
        "| absorb | (defaults) | 0, 3 | 0.100 [0.100, 0.100] | 0.700 [0.700, 0.700] | 0.200 |"
        in (section)
    )


def test_configuration_rows_average_a_remade_seed_and_sort_by_deployed_hack():
    def run(arm, seed, hack, solve, overrides="", trained="0.5"):
        return {"arm": arm, "seed": str(seed), "overrides": overrides, "deployed_hack": hack,
                "deployed_solve": solve, "as_trained_hack": trained}  # fmt: skip

    runs = [
        run("routeA", 0, "0.2", "0.6"),
        run("routeA", 0, "0.4", "0.6"),  # the same seed made again: averaged to 0.3 first
        run("routeA", 1, "0.1", "0.8"),
        run("oracle", 0, "0.05", "0.7", overrides="lr=0.1"),
    ]
    rows = configuration_rows(runs)
    assert [r[:3] for r in rows] == [["oracle", "lr=0.1", "0"], ["routeA", "(defaults)", "0-1"]]
    assert rows[0][3] == "0.050" and rows[0][5] == "0.500"  # one seed: no interval
    assert rows[1][3] == "0.200 [0.100, 0.300]" and rows[1][4] == "0.700 [0.600, 0.800]"


def test_seed_ranges():
    assert seed_ranges(["4", "0", "1", "2", "3", "7", "9", "8"]) == "0-4, 7-9"
    assert seed_ranges([5]) == "5"


def test_the_committed_index_is_current():
    # docs/evidence/INDEX.md and all-runs.csv are generated: a publish without `vgrout index`
    # (the Makefile's evidence rules run it) leaves them stale
    root = REPO / "docs" / "evidence"
    text, table = evidence_index(root)
    assert (root / "INDEX.md").read_text() == text, "run `vgrout index docs/evidence`"
    assert (root / "all-runs.csv").read_text() == table, "run `vgrout index docs/evidence`"
    # and CLAIMS.md: every README claim in claims.toml, re-computed from all-runs.csv
    claims = claims_page(root, table, "docs/evidence")
    assert claims is not None, "docs/evidence/claims.toml is missing"
    assert (root / "CLAIMS.md").read_text() == claims, "run `vgrout index docs/evidence`"


def test_the_readme_quotes_claims_md_verdict_counts():
    # The README's headline counts are CLAIMS.md's bold summary lines, word for word: when new runs
    # move a verdict, this fails until the README says what CLAIMS.md now says.
    claims = (REPO / "docs" / "evidence" / "CLAIMS.md").read_text()
    readme = " ".join((REPO / "README.md").read_text().split())
    summaries = claims_summaries(claims)
    assert len(summaries) == 2, "CLAIMS.md lost a summary line"
    for line in summaries:
        assert line in readme, f"README.md does not quote CLAIMS.md's line: {line!r}"
