"""`vgrout export`: stock PEFT and merged exports reproduce vgrout's own forward of each state."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vgrout.adapters import AdapterConfig, attach
from vgrout.adapters.blocklora import load_adapter
from vgrout.export import export_run
from vgrout.presets import load_preset

# The module's smoke runs are shared by its tests: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("export")

TOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two-step smoke runs of `none` and `absorb` (finished: checkpoints + summary.json)."""
    from vgrout.rl.train import train

    root = tmp_path_factory.mktemp("export-runs")
    out = {}
    for arm in ("none", "absorb"):
        cfg = load_preset("smoke").override([f"arm={arm}"]).validate()
        train(cfg, root / arm, progress=False)
        out[arm] = root / arm
    return out


def _base_path(run: Path) -> str:
    return json.loads((run / "base.json").read_text())["name_or_path"]


def _ids(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (3, 20), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _vgrout_logits(run: Path, ablate: bool) -> torch.Tensor:
    """vgrout's own forward: the base + the last checkpoint's BlockLoRA, quarantine ablated or not."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(_base_path(run)).eval()
    ckpt = sorted((run / "checkpoints").glob("step_*"))[-1] / "adapter.safetensors"
    handle = load_adapter(model, ckpt)
    with handle.ablated() if ablate else contextlib.nullcontext():
        return model(_ids(model.config.vocab_size)).logits


@torch.no_grad()
def _peft_logits(export: Path) -> tuple[torch.Tensor, list[str]]:
    """Stock PEFT: the base named in adapter_config.json + the exported adapter. Also returns the
    names of the modules PEFT wrapped."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = json.loads((export / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, str(export)).eval()
    wrapped = sorted(
        n.removeprefix("base_model.model.")
        for n, m in model.named_modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    )
    return model(_ids(base.config.vocab_size)).logits, wrapped


@torch.no_grad()
def _merged_logits(export: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(export)).eval()
    return model(_ids(model.config.vocab_size)).logits


@torch.no_grad()
def _base_logits(run: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(_base_path(run)).eval()
    return model(_ids(model.config.vocab_size)).logits


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --------------------------------------------------------------------- exactness of each state
@pytest.mark.slow
@pytest.mark.parametrize(
    ("arm", "state", "ablate"),
    [
        ("absorb", "deployed", True),
        ("absorb", "as-trained", False),
        ("none", "deployed", False),  # no quarantine to remove: evaluate's deployed = as-trained
    ],
)
def test_peft_export_reproduces_vgrout_forward(runs, tmp_path, arm, state, ablate):
    out = export_run(runs[arm], tmp_path / "x", state)
    logits, wrapped = _peft_logits(out)
    ours = _vgrout_logits(runs[arm], ablate)
    assert _gap(logits, ours) <= TOL
    assert _gap(logits, _base_logits(runs[arm])) > 1e-4  # the adapter is really applied
    # exactly BlockLoRA's modules are adapted, nothing extra
    ckpt = sorted((runs[arm] / "checkpoints").glob("step_*"))[-1] / "adapter.safetensors"
    from vgrout.adapters.io import read_header

    assert wrapped == sorted(read_header(ckpt)["module_names"])
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["lora_alpha"] == cfg["r"] and cfg["lora_dropout"] == 0 and not cfg["use_rslora"]


@pytest.mark.slow
def test_merged_export_equals_the_peft_export(runs, tmp_path):
    peft_dir = export_run(runs["absorb"], tmp_path / "peft", "deployed")
    merged = export_run(runs["absorb"], tmp_path / "merged", "deployed", merged=True)
    assert _gap(_merged_logits(merged), _peft_logits(peft_dir)[0]) <= TOL
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged))  # servable: the tokenizer travels along
    assert tok.chat_template
    assert {p.name for p in merged.glob("*.safetensors")}


@pytest.mark.slow
def test_none_deployed_equals_as_trained(runs, tmp_path):
    """Holds whether `none` deploys its whole adapter or keeps its quarantine at init."""
    dep = _peft_logits(export_run(runs["none"], tmp_path / "d", "deployed"))[0]
    full = _peft_logits(export_run(runs["none"], tmp_path / "t", "as-trained"))[0]
    assert _gap(dep, full) <= TOL


@pytest.mark.slow
def test_absorb_deployed_differs_from_as_trained(runs, tmp_path):
    dep = _peft_logits(export_run(runs["absorb"], tmp_path / "d", "deployed"))[0]
    full = _peft_logits(export_run(runs["absorb"], tmp_path / "t", "as-trained"))[0]
    assert _gap(dep, full) > 1e-4  # the quarantine trained and is gone from deployed
    assert _gap(full, _vgrout_logits(runs["absorb"], ablate=False)) <= TOL


def test_conv1d_model_exports_exactly(tmp_path):
    """A GPT-2 (Conv1D weights [d_in, d_out], `c_proj` in both attention and MLP) from a hub-style
    base folder, at an earlier --step: PEFT and merged both reproduce the BlockLoRA forward."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50)).eval()
    base.save_pretrained(tmp_path / "gpt2")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arm": "absorb", "seed": 3, "model": "gpt2"}))
    (run / "base.json").write_text(json.dumps({"name_or_path": str(tmp_path / "gpt2")}))
    handle = attach(base, AdapterConfig(r=2, targets=("c_attn", "c_proj", "c_fc")))
    with torch.no_grad():
        for step in (1, 2):  # train-like moves of A and B, one checkpoint each
            for p in handle.parameters():
                p.add_(0.1 * torch.randn_like(p))
            handle.save(run / "checkpoints" / f"step_{step:06d}" / "adapter.safetensors")
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), handle.ablated():
        ours = base(ids).logits
    out = export_run(run, tmp_path / "x", "deployed", step=2)
    from peft import PeftModel

    model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2"), str(out))
    with torch.no_grad():
        assert _gap(model.eval()(ids).logits, ours) <= TOL
    assert json.loads((out / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    merged = export_run(run, tmp_path / "m", "deployed", merged=True, step=2)
    with torch.no_grad():
        assert _gap(GPT2LMHeadModel.from_pretrained(merged).eval()(ids).logits, ours) <= TOL
    # step 1 is another model, and its card says the step (no summary: not evaluated)
    early = export_run(run, tmp_path / "e", "deployed", step=1)
    card = (early / "README.md").read_text()
    assert "step 1" in card and "Not evaluated" in card


# --------------------------------------------------------------------- model card
@pytest.mark.slow
def test_model_card_names_the_run_and_its_held_out_numbers(runs, tmp_path):
    out = export_run(runs["absorb"], tmp_path / "x", "deployed")
    card = (out / "README.md").read_text()
    summary = json.loads((runs["absorb"] / "summary.json").read_text())["deployed"]
    for text in (
        "absorb",
        "seed 0",
        "deployed",
        _base_path(runs["absorb"]),
        f"hack {summary['hack']:.3f}, solve {summary['solve']:.3f} (n = {summary['n']})",
    ):
        assert text in card
    commit = json.loads((out / "vgrout_export.json").read_text())["commit"]
    assert len(commit.removesuffix("-dirty")) == 40 or commit.startswith("unknown")
    assert commit in card


# --------------------------------------------------------------------- refusals
@pytest.mark.slow
def test_existing_output_folder_is_refused_and_untouched(runs, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        export_run(runs["none"], out, "deployed")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no temp sibling left


@pytest.mark.slow
def test_a_failed_export_leaves_nothing_behind(runs, tmp_path, monkeypatch):
    import vgrout.export as export

    def boom(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(runs["none"], tmp_path / "x", "deployed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_state_missing_checkpoint_and_lost_base_are_refused(runs, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown state 'quarantine'.*deployed or as-trained"):
        export_run(runs["none"], tmp_path / "a", "quarantine")
    with pytest.raises(
        FileNotFoundError, match="no checkpoint of step 99; it has steps \\[1, 2\\]"
    ):
        export_run(runs["none"], tmp_path / "a", "deployed", step=99)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(runs["none"] / "config.json", bare / "config.json")
    with pytest.raises(FileNotFoundError, match="has no checkpoint.*--resume"):
        export_run(bare, tmp_path / "a", "deployed")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        export_run(tmp_path / "nowhere", tmp_path / "a", "deployed")
    moved = tmp_path / "moved"
    shutil.copytree(runs["none"], moved)
    (moved / "base.json").write_text(json.dumps({"name_or_path": "/gone/0123456789abcdef"}))
    with pytest.raises(FileNotFoundError, match="this checkout builds another toy base.*--base"):
        export_run(moved, tmp_path / "a", "deployed")
    out = export_run(moved, tmp_path / "b", "deployed", base=_base_path(runs["none"]))  # way out
    assert "the run recorded `/gone/0123456789abcdef`" in (out / "README.md").read_text()
    rebuilt = tmp_path / "rebuilt"  # the run's base folder, as another machine builds it
    shutil.copytree(runs["none"], rebuilt)
    recorded = json.loads((rebuilt / "base.json").read_text())
    assert len(recorded["weights_sha256"]) == 64
    (rebuilt / "base.json").write_text(json.dumps({**recorded, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="another machine.*--base"):
        export_run(rebuilt, tmp_path / "a", "deployed")
    monkeypatch.setenv("VGROUT_CPU_KERNELS", "portable")  # the run was made natively: say so
    with pytest.raises(ValueError, match="made with VGROUT_CPU_KERNELS=native.*; or pass --base"):
        export_run(rebuilt, tmp_path / "a", "deployed")
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_cli_exports_and_reports_errors(runs, tmp_path):
    def vgrout(*args):
        return subprocess.run(
            [sys.executable, "-m", "vgrout.cli", "export", *map(str, args)],
            capture_output=True,
            text=True,
        )

    ok = vgrout(runs["absorb"], "--state", "as-trained", "--merged", "--out", tmp_path / "m")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "m" / "config.json").is_file()
    again = vgrout(runs["absorb"], "--state", "deployed", "--out", tmp_path / "m")
    assert again.returncode == 2
    assert "vgrout export: error:" in again.stderr and "already exists" in again.stderr
