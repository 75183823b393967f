"""The run folder contract (DESIGN.md "Contracts").

    config.json        the full TrainConfig
    metrics.jsonl      one row per training step
    eval.jsonl         one row per evaluation (periodic and final)
    rollouts.parquet   one row per rollout: step, prompt, mode, source, reward, labels, score, zone,
                       feature_norm (the raw gate feature's norm, scoring arms)
    checkpoints/       step_NNNNNN/ {adapter.safetensors, trainer.pt}
    summary.json       final numbers (written last: its presence means the run finished)
    base.json          which base weights the adapter belongs to (for a locally built base such
                       as the toy's, also the sha256 of its weight files)
    provenance.json    the vgrout commit the run was started with (and whether src/ was edited),
                       torch's CPU thread count and the CPU's vector kernels (float reductions, so
                       bits, depend on both) and the numeric libraries' versions
    report.md + *.png  written by `vgrout report`

Every file that is rewritten is written to a temp file and renamed, so a killed run never leaves a
half-written file; jsonl files are appended a whole line at a time and truncated on resume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temp sibling renamed into place, removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp sibling folder to fill; it is renamed to `path` only if the body succeeds,
    else removed, so `path` is either absent or complete. `path` must not exist."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; choose another folder or delete it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private (0700); the result is not
        yield tmp
        if path.exists():  # created while we worked: never replace someone else's folder
            raise FileExistsError(f"{path} appeared while it was being written; nothing replaced")
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def code_provenance() -> dict:
    """The git commit of the vgrout checkout this code runs from, and whether its `src/` differs
    from that commit (a dirty run cannot be reproduced from the commit alone). Both None outside a
    git checkout (e.g. an installed wheel)."""
    src = Path(__file__).resolve().parents[1]  # .../src

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no", "--", str(src))
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


LOCAL_WEIGHTS_HASH_LIMIT = 256 * 2**20
"""Local base folders up to this size of *.safetensors get a weights sha256 in base.json (the toy's
is ~2 MB); larger ones (a local copy of a hub model) are named by their path only."""


def local_weights_sha256(name_or_path) -> str | None:
    """sha256 of a local model folder's *.safetensors files (sorted by name), or None for a hub id,
    a folder without them, or one above LOCAL_WEIGHTS_HASH_LIMIT. Identifies a locally built base:
    the toy's folder is named by its recipe, but the same recipe trained on another CPU (other
    vector kernels) or with other library versions gives other weights."""
    import hashlib

    folder = Path(str(name_or_path))
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.safetensors"))
    if not files or sum(f.stat().st_size for f in files) > LOCAL_WEIGHTS_HASH_LIMIT:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


def base_weights_mismatch(run_dir, name_or_path) -> tuple[str, str] | None:
    """(recorded, found) short hashes when the run's base.json records a weights hash that the base
    at `name_or_path` does not have (a base whose hash cannot be taken, e.g. a hub id, counts as
    another base); None when they match or the run recorded no hash (made before hashing, or on a
    hub base). The one rule for resume, `vgrout eval` and `vgrout export`."""
    recorded = Path(run_dir) / "base.json"
    was = json.loads(recorded.read_text()).get("weights_sha256") if recorded.is_file() else None
    if not was:
        return None
    now = local_weights_sha256(name_or_path)
    return None if now == was else (was[:12], now[:12] if now else "no hash")


def cpu_identity() -> dict:
    """The CPU's model name, the kernel mode (`VGROUT_CPU_KERNELS`), the vector kernels torch
    dispatches to (e.g. AVX2, AVX512, DEFAULT) and MKL's branch: runs on CPUs with other kernels
    sum in another order, so their samples (and a locally trained toy base) differ in the last
    bits and then diverge (see `vgrout.kernels`)."""
    import platform

    from vgrout import kernels

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": model, **kernels.verify()}


def kernels_mismatch(run_dir) -> tuple[str, str] | None:
    """(recorded, requested) CPU kernel modes when the run was made under other kernels than this
    process asks for (`VGROUT_CPU_KERNELS`), else None (also for a folder without provenance).
    Runs made before the setting existed were made with native kernels. The one rule for resume,
    `vgrout eval`, `vgrout export` and sweeps."""
    from vgrout import kernels

    prov = Path(run_dir) / "provenance.json"
    if not prov.is_file():
        return None
    was, now = kernels.recorded(json.loads(prov.read_text())), kernels.requested()
    return None if was == now else (was, now)


def check_kernels(run_dir) -> None:
    """Refuse to resume, evaluate or export a run under other CPU kernels than it was made with:
    the toy base is another build there and every sum rounds otherwise."""
    from vgrout import kernels

    mismatch = kernels_mismatch(run_dir)
    if mismatch:
        was, now = mismatch
        raise ValueError(
            f"{run_dir} was made with {kernels.ENV}={was}, but this process runs {now} kernels: "
            f"set {kernels.ENV}={was} to resume, evaluate or export it"
        )


def run_provenance() -> dict:
    """What a CPU run needs besides its config to be re-run bit for bit: the code's commit,
    torch's intra-op thread count (1 vs 2 threads change sums in the 7th digit, which can flip a
    sampled token many steps later), the CPU's vector kernels (same effect) and the numeric
    libraries' versions (the toy base is trained here, so a new transformers or tokenizers can
    give other base weights under the same recipe; base.json holds the weights' hash)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    packages = {}
    for name in ("torch", "transformers", "tokenizers", "numpy"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        **code_provenance(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_identity(),
        "packages": packages,
    }


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)

    # paths
    config = property(lambda self: self.root / "config.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    evals = property(lambda self: self.root / "eval.jsonl")
    rollouts = property(lambda self: self.root / "rollouts.parquet")
    summary = property(lambda self: self.root / "summary.json")
    provenance = property(lambda self: self.root / "provenance.json")
    checkpoints = property(lambda self: self.root / "checkpoints")

    def ensure_new(self) -> None:
        """Refuse a folder that already holds a run (checked before any work is done)."""
        if self.config.exists():
            raise FileExistsError(
                f"{self.root} already holds a run (config.json exists); resume it with "
                f"`vgrout train --resume {self.root}` or choose another --out"
            )

    def create(self, config_json: str) -> None:
        """Start a fresh run (after `ensure_new`)."""
        self.ensure_new()
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.provenance, json.dumps(run_provenance(), indent=2, sort_keys=True))
        atomic_write_text(self.config, config_json)

    def append(self, path: Path, row: dict) -> None:
        with open(path, "a") as fh:
            fh.write(json.dumps(row, sort_keys=True, default=_json_default) + "\n")

    def truncate_jsonl(self, path: Path, keep) -> None:
        rows = [r for r in read_jsonl(path) if keep(r)]
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    def write_rollouts(self, rows: list[dict]) -> None:
        table = pa.Table.from_pylist(rows) if rows else pa.table({"step": pa.array([], pa.int64())})
        fd, tmp = tempfile.mkstemp(prefix=".rollouts.", suffix=".parquet", dir=self.root)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self.rollouts)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_rollouts(self) -> list[dict]:
        if not self.rollouts.is_file():
            return []
        return pq.read_table(self.rollouts).to_pylist()

    def write_json(self, path: Path, obj) -> None:
        atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default))

    # checkpoints
    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:06d}"

    def save_checkpoint(self, step: int, write) -> Path:
        """`write(tmpdir)` fills a temp folder that is renamed into place only when complete."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir(step)
        tmp = Path(tempfile.mkdtemp(prefix=f".step_{step:06d}.", dir=self.checkpoints))
        try:
            write(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        if not self.checkpoints.is_dir():
            return None
        found = sorted(
            (int(p.name.split("_")[1]), p)
            for p in self.checkpoints.iterdir()
            if p.is_dir() and p.name.startswith("step_")
        )
        return found[-1] if found else None


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
