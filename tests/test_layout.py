"""The package layout's rules (README "Architecture"): few top-level modules, none over 500 lines,
and no import cycles between modules (function-level imports count: they are cycles too)."""

from __future__ import annotations

import ast
from pathlib import Path

import vgrout

ROOT = Path(vgrout.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names if a.name.startswith("vgrout")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vgrout"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(owner(full) if full in modules else owner(node.module))
        graph[name] = deps - {None, name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_a_ring_and_a_clean_chain():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles_between_modules():
    assert _cycles(_import_graph(_modules())) == []


def test_at_most_12_modules_directly_under_the_package():
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 12, top


def test_no_module_over_500_lines():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}


def test_the_environment_does_not_depend_on_the_rest_of_the_package():
    graph = _import_graph(_modules())
    outside = {
        (name, dep)
        for name, deps in graph.items()
        if name.startswith("vgrout.env")
        for dep in deps
        if not dep.startswith("vgrout.env")
    }
    assert outside == set()


def test_local_weights_hash_names_the_bytes_of_a_local_base(tmp_path):
    from vgrout.runfolder import LOCAL_WEIGHTS_HASH_LIMIT, local_weights_sha256

    base = tmp_path / "base"
    base.mkdir()
    assert local_weights_sha256(base) is None  # no weight files
    assert local_weights_sha256("Qwen/Qwen3-4B") is None  # a hub id
    (base / "model.safetensors").write_bytes(b"weights")
    first = local_weights_sha256(base)
    assert len(first) == 64 and local_weights_sha256(str(base)) == first
    (base / "model.safetensors").write_bytes(b"weightz")  # one byte differs
    assert local_weights_sha256(base) != first
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "model.safetensors", "wb") as fh:
        fh.truncate(LOCAL_WEIGHTS_HASH_LIMIT + 1)  # sparse: large, not slow
    assert local_weights_sha256(big) is None


def test_base_weights_mismatch_is_one_rule_for_resume_eval_and_export(tmp_path):
    import json

    from vgrout.runfolder import base_weights_mismatch, local_weights_sha256

    base, run = tmp_path / "base", tmp_path / "run"
    base.mkdir(), run.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")
    assert base_weights_mismatch(run, base) is None  # no base.json: nothing recorded
    (run / "base.json").write_text(json.dumps({"name_or_path": str(base)}))
    assert base_weights_mismatch(run, "Qwen/Qwen3-4B") is None  # recorded no hash (older run)
    sha = local_weights_sha256(base)
    (run / "base.json").write_text(json.dumps({"name_or_path": str(base), "weights_sha256": sha}))
    assert base_weights_mismatch(run, base) is None
    assert base_weights_mismatch(run, "Qwen/Qwen3-4B") == (sha[:12], "no hash")  # unverifiable
    (base / "model.safetensors").write_bytes(b"weightz")
    assert base_weights_mismatch(run, base) == (sha[:12], local_weights_sha256(base)[:12])


def test_provenance_names_the_cpu_kernels():
    import torch

    from vgrout.runfolder import run_provenance

    cpu = run_provenance()["cpu"]
    assert cpu["capability"] == torch.backends.cpu.get_cpu_capability() and cpu["model"]
