"""CPU kernel modes (`vgrout.kernels`): parsing, what portable sets, refusals to mix modes, and
that the portable mode really changes what torch and MKL compute with (subprocesses: the
variables are read once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from vgrout import kernels
from vgrout.presets import load_preset
from vgrout.runfolder import RunFolder, check_kernels, run_provenance


def _kernels_cli(**env) -> dict[str, str]:
    """`vgrout kernels` in a fresh process; its rows as {name: value}."""
    base = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    base.pop(kernels.ENV, None)
    out = subprocess.run(
        [sys.executable, "-m", "vgrout", "kernels"],
        capture_output=True,
        text=True,
        env={**base, **env},
    )
    assert out.returncode == 0, out.stderr
    return {line[:14].strip(): line[14:].strip() for line in out.stdout.splitlines()}


def test_requested_mode_defaults_to_native_and_names_a_bad_value():
    assert kernels.requested({}) == "native"
    assert kernels.requested({kernels.ENV: " Portable "}) == "portable"
    with pytest.raises(ValueError, match=r"'fast' is not a kernel mode.*native, portable"):
        kernels.requested({kernels.ENV: "fast"})


def test_apply_sets_the_portable_variables_and_refuses_a_conflicting_one():
    env = {kernels.ENV: "portable"}
    assert kernels.apply(env) == "portable"
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["MKL_CBWR"] == "COMPATIBLE"
    assert kernels.apply({kernels.ENV: "portable", "MKL_CBWR": "compatible"}) == "portable"
    with pytest.raises(ValueError, match="ATEN_CPU_CAPABILITY=avx2"):
        kernels.apply({kernels.ENV: "portable", "ATEN_CPU_CAPABILITY": "avx2"})
    native = {"ATEN_CPU_CAPABILITY": "avx2"}
    assert kernels.apply(native) == "native" and native == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert kernels.environment() == {kernels.ENV: "native"}  # this test process


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="torch already runs DEFAULT here"
)
def test_portable_requested_after_torch_computed_is_refused(monkeypatch):
    # this process computed with native kernels: asking for portable now must not pass silently
    monkeypatch.setenv(kernels.ENV, "portable")
    with pytest.raises(RuntimeError, match="not in effect"):
        kernels.verify()
    with pytest.raises(RuntimeError, match="not in effect"):
        run_provenance()  # so no run folder ever records portable kernels it did not use


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="torch already runs DEFAULT here"
)
def test_portable_mode_changes_the_kernels_and_the_fingerprint():
    native, portable = _kernels_cli(), _kernels_cli(**{kernels.ENV: "portable"})
    assert native["kernels"].startswith("native") and portable["kernels"].startswith("portable")
    assert native["torch kernels"] == torch.backends.cpu.get_cpu_capability()
    assert portable["torch kernels"] == "DEFAULT"
    if native["mkl branch"] != "no MKL":
        assert portable["mkl branch"] == "compatible" and native["mkl branch"] != "compatible"
    # other kernels round otherwise, and the fingerprint sees it
    assert native["fingerprint"] != portable["fingerprint"]
    # the fingerprint runs on one thread: the caller's thread count does not move it
    again = _kernels_cli(**{kernels.ENV: "portable", "OMP_NUM_THREADS": "2"})
    assert again["fingerprint"] == portable["fingerprint"]


def test_a_run_is_not_resumed_or_reused_under_other_kernels(tmp_path, monkeypatch):
    from vgrout.experiments.sweep import cell_state

    cfg = load_preset("smoke").override(["arm=none"]).validate()
    folder = RunFolder(tmp_path / "run")
    folder.create(cfg.to_json())  # provenance of this (native) process
    folder.write_json(folder.summary, {"deployed": {}, "as_trained": {}})
    assert json.loads(folder.provenance.read_text())["cpu"]["kernels"] == "native"
    check_kernels(folder.root)
    assert cell_state(folder.root, cfg.to_dict()) == "reuse"
    monkeypatch.setenv(kernels.ENV, "portable")
    with pytest.raises(ValueError, match="made with VGROUT_CPU_KERNELS=native"):
        check_kernels(folder.root)
    with pytest.raises(ValueError, match="made with VGROUT_CPU_KERNELS=native"):
        cell_state(folder.root, cfg.to_dict())
    # a run from before the field counts as native
    assert kernels.recorded({"cpu": {"capability": "AVX2"}}) == "native"


def test_a_sweep_worker_without_the_sweeps_kernels_fails_its_cell(tmp_path):
    from vgrout.experiments.sweep.cells import execute_cell

    cfg = load_preset("smoke").override(["arm=none"]).validate()
    task = {"name": "c", "dir": str(tmp_path / "c"), "config": cfg.to_dict(), "kernels": "portable"}
    result = execute_cell(task, train_fn=lambda c, out: pytest.fail("must not train"))
    assert result["status"] == "failed" and "did not get VGROUT_CPU_KERNELS" in result["error"]
    assert (tmp_path / "c" / "failed.json").is_file()


def test_the_portable_toy_base_has_its_own_cache(monkeypatch, tmp_path):
    from vgrout.toy.cache import base_folder, cache_dir
    from vgrout.toy.model import ToyRecipe, build_key, training_corpus

    monkeypatch.setenv("VGROUT_CACHE", str(tmp_path))
    recipe = ToyRecipe()
    key = build_key(0, recipe, *training_corpus(0, recipe))
    assert base_folder(recipe) == tmp_path / "toy" / key  # native: the cache as it always was
    monkeypatch.setenv(kernels.ENV, "portable")
    assert cache_dir() == tmp_path / "toy-portable"
    assert base_folder(recipe) == tmp_path / "toy-portable" / key


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="torch already runs DEFAULT here"
)
def test_no_native_build_lands_in_the_portable_cache(monkeypatch, tmp_path):
    from vgrout.toy.cache import toy_base
    from vgrout.toy.model import SMOKE_RECIPE

    monkeypatch.setenv("VGROUT_CACHE", str(tmp_path))
    monkeypatch.setenv(kernels.ENV, "portable")  # requested, but this process computes natively
    with pytest.raises(RuntimeError, match="not in effect"):
        toy_base(SMOKE_RECIPE, progress=False)
    assert not (tmp_path / "toy-portable").exists()


def test_a_portable_toy_base_trains_on_a_fixed_thread_count(monkeypatch, tmp_path):
    # under portable kernels 1 and 2 threads train other weights (measured), so the build must not
    # follow the machine's load as a native build does
    import vgrout.toy.cache as cache

    monkeypatch.setenv("VGROUT_CACHE", str(tmp_path))
    seen: dict = {}
    monkeypatch.setattr(cache, "build_toy_base", lambda **kw: seen.update(kw) or tmp_path)
    cache.toy_base(progress=False)
    assert seen["threads"] is None and seen["cache_dir"] == tmp_path / "toy"
    monkeypatch.setenv(kernels.ENV, "portable")
    monkeypatch.setattr(kernels, "verify", lambda: {"kernels": "portable"})  # as if in effect
    cache.toy_base(progress=False)
    assert seen["threads"] == cache.PORTABLE_BUILD_THREADS
    assert seen["cache_dir"] == tmp_path / "toy-portable"


def test_the_demo_keeps_each_modes_runs_in_its_own_folder(monkeypatch):
    from pathlib import Path

    from vgrout.experiments.demo import default_out

    assert default_out() == Path("runs/demo")
    monkeypatch.setenv(kernels.ENV, "portable")
    assert default_out() == Path("runs/demo-portable")
