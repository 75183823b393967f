"""The `vgrout` command. Each sub-command imports its module lazily so `vgrout grade` stays torch-free."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _config_from_args(args) -> object:
    from vgrout.presets import load_preset

    cfg = load_preset(args.preset)
    overrides = list(args.set or [])
    for name in ("seed", "init"):
        value = getattr(args, name, None)
        if value is not None:
            overrides.append(f"{name}={value}")
    cfg = cfg.override(overrides)
    arm = getattr(args, "arm", None)
    if arm is None:
        return cfg.validate()
    # A derived arm (`routeV_placebo`) expands exactly as in a sweep cell, so every row of a
    # sweep's runs.csv re-runs with `vgrout train --arm ARM --seed SEED --set ...`.
    from vgrout.experiments.sweep import cell_config

    explicit = {a.split("=", 1)[0].strip().replace("-", "_"): None for a in args.set or []}
    return cell_config(cfg, {"arm": arm, **{k: getattr(cfg, k) for k in explicit}})


def cmd_grade(args) -> int:
    from vgrout.env.grade_cli import grade_file

    summary = grade_file(
        Path(args.problems),
        Path(args.responses),
        args.mode,
        args.eval_markers,
        Path(args.out),
        workers=args.workers,
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_data(args) -> int:
    from vgrout.env.grade_cli import leetcode_train

    summary = leetcode_train(Path(args.from_path), Path(args.out), workers=args.workers)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_bench(args) -> int:
    if args.what == "grader":
        from vgrout.bench.grader import bench_grader

        bench_grader(n=args.n, workers=args.workers)
    elif args.what == "routing":
        from vgrout.bench.routing import bench_routing

        # bench_routing returns its lines without printing them (its module's main prints)
        for line in bench_routing(batch=args.batch or 32, repeats=args.repeats):
            print(line)
    elif args.what == "step":
        from vgrout.bench.step import bench_step

        bench_step(
            steps=4 if args.steps is None else args.steps,
            preset=args.preset,
            random_weights=args.random_weights,
            shape=args.shape,
            overrides=tuple(args.set or ()),
            arms=tuple(args.arms.split(",")) if args.arms else None,
            warmup=args.warmup,
        )
    elif args.what == "trl":
        from vgrout.bench.trl import bench_trl

        bench_trl(
            steps=8 if args.steps is None else args.steps,
            warmup=args.warmup,
            overrides=tuple(args.set or ()),
        )
    elif args.what == "generate":
        from vgrout.bench.generate import bench_generate

        bench_generate(
            shape=args.shape or "qwen3-vocab-tiny",
            batch=args.batch or 56,
            new_tokens=args.new_tokens,
            prompt_len=args.prompt_len,
            device=args.device,
            rounds=args.rounds,
            cache=args.cache,
            compile=args.compile,
        )
    return 0


def cmd_export(args) -> int:
    from vgrout.export import export_run

    out = Path(args.out)
    export_run(Path(args.run_dir), out, args.state, args.merged, args.step, args.base)
    print(out)
    return 0


def cmd_kernels(args) -> int:
    import platform
    from importlib.metadata import version

    from vgrout import kernels
    from vgrout.runfolder import cpu_identity

    now = cpu_identity()  # the model name and kernels.verify()'s state, checked once
    rows = [
        ("kernels", f"{now['kernels']} ({kernels.ENV})"),
        ("cpu", now["model"] or platform.machine()),
        ("torch kernels", now["capability"]),
        ("mkl branch", now["mkl_branch"] or "no MKL"),
        ("versions", f"torch {version('torch')}, transformers {version('transformers')}"),
        ("fingerprint", kernels.fingerprint()),
    ]
    for name, value in rows:
        print(f"{name:<14}{value}")
    return 0


def cmd_toy(args) -> int:
    from vgrout.toy.cache import toy_base

    path = toy_base(seed=args.seed, force=args.force)
    print(path)
    return 0


def cmd_train(args) -> int:
    from vgrout.rl.train import train

    if args.resume:
        from vgrout.rl.train import resume

        resume(Path(args.resume))
        return 0
    if not args.out:
        raise SystemExit("vgrout train: --out DIR is required (or --resume DIR)")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit("vgrout train: --threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    train(_config_from_args(args), Path(args.out))
    return 0


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_eval(args) -> int:
    from vgrout.experiments.sweep.folder import SWEEP_FILE
    from vgrout.rl.run_eval import eval_config, final_evaluation_from_dir
    from vgrout.runfolder import atomic_write_text

    root, shown = Path(args.run_dir), None
    if (root / SWEEP_FILE).is_file():  # every finished run of a sweep, per group
        from vgrout.experiments.sweep.cross_eval import cross_eval_table, cross_evaluate

        if args.base_model:
            raise ValueError("--base-model takes a run folder, not a sweep folder")
        result = cross_evaluate(root, args.set, progress=_err)
        shown = f"evaluated on {' '.join(args.set)}:\n{cross_eval_table(result)}"
    elif args.base_model:  # the row every arm is read against, on the same evaluation set
        from vgrout.experiments.decision import base_eval

        result = {"base_model": base_eval(eval_config(root, args.set)), "eval_overrides": args.set}
    else:
        result = final_evaluation_from_dir(root, args.set)
    text = json.dumps(result, indent=2)
    if args.out:
        atomic_write_text(Path(args.out), text)
    print(shown or text)
    return 0


def cmd_decision(args) -> int:
    from vgrout.experiments.decision import run_decision

    run_decision(_config_from_args(args), Path(args.out), seeds=args.seeds, jobs=args.jobs)
    return 0


def cmd_report(args) -> int:
    from vgrout.experiments.report import write_report
    from vgrout.experiments.report.sweep import is_sweep_dir, write_sweep_report

    root = Path(args.run_dir)
    if is_sweep_dir(root):  # a sweep report is long: print its arms table and verdicts
        arms = [a for a in (args.classify_arms or "").split(",") if a] or None
        text = write_sweep_report(
            root,
            classify=args.classify,
            classify_arms=arms,
            reading=Path(args.reading) if args.reading else None,
            publish=Path(args.publish) if args.publish else None,
        )[1]
        print(text)
        return 0
    if args.classify_arms or args.reading or args.publish:
        raise SystemExit("vgrout report: --classify-arms, --reading, --publish need a sweep folder")
    path = write_report(root, classify=args.classify)
    print(path.read_text())
    return 0


def cmd_index(args) -> int:
    from vgrout.experiments.report.claims import CLAIMS_MD, claims_summaries
    from vgrout.experiments.report.evidence_index import write_evidence_index

    for path in write_evidence_index(Path(args.dir)):
        print(path)
        if path.name == CLAIMS_MD:
            for line in claims_summaries(path.read_text()):
                print(f"  {line}")
    return 0


def cmd_sweep(args) -> int:
    from vgrout.experiments.sweep import load_sweep_spec, run_sweep, spec_from_cli

    out = Path(args.out)
    if args.grid or args.spec or not (out / "sweep.json").is_file():
        spec = spec_from_cli(
            args.preset, args.grid, args.set, Path(args.spec) if args.spec else None
        )
    else:
        spec = load_sweep_spec(out)  # re-run a sweep folder without retyping its grid
    result = run_sweep(
        spec, out, backend=args.backend, address=args.address, num_cpus=args.num_cpus,
        jobs=args.jobs, force_grid=args.force_grid,
    )  # fmt: skip
    print(json.dumps(result["counts"]))
    return 1 if result["counts"].get("failed") else 0


def cmd_classify(args) -> int:
    from vgrout.experiments.classify import classify_run

    print(
        classify_run(
            Path(args.run_dir), max_rollouts=args.max_rollouts, seed=args.seed, n_haar=args.n_haar
        )
    )
    return 0


def cmd_demo(args) -> int:
    from vgrout.experiments.demo import default_out, demo

    return demo(Path(args.out) if args.out else default_out())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgrout", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("grade", help="grade model responses with the sandboxed grader")
    g.add_argument("--problems", required=True, help="benchmark or LeetCodeDataset jsonl(.gz)")
    g.add_argument("--responses", required=True, help='JSONL of {"problem_id", "response"}')
    g.add_argument("--mode", required=True, help="loophole mode the responses are graded in")
    g.add_argument("--eval-markers", action="store_true", help="use held-out marker names")
    g.add_argument("--out", required=True, help="output JSONL (same order as responses)")
    g.add_argument("--workers", type=int, default=None, help="sandbox pool size (default: CPUs)")
    g.set_defaults(func=cmd_grade)

    d = sub.add_parser("data", help="build datasets")
    dsub = d.add_subparsers(dest="dataset", required=True)
    lt = dsub.add_parser(
        "leetcode-train", help="benchmark training-set recipe (Medium+Hard, passing)"
    )
    lt.add_argument("--from", dest="from_path", required=True, help="LeetCodeDataset jsonl(.gz)")
    lt.add_argument("--out", required=True)
    lt.add_argument("--workers", type=int, default=None)
    lt.set_defaults(func=cmd_data)

    b = sub.add_parser("bench", help="benchmarks (print numbers and ratios)")
    b.add_argument("what", choices=["grader", "routing", "step", "trl", "generate"])
    b.add_argument("--n", type=int, default=500, help="grader: responses")
    b.add_argument("--workers", type=int, default=None, help="grader: pool size")
    b.add_argument("--repeats", type=int, default=7, help="routing: timed repeats per variant")
    b.add_argument(
        "--batch",
        type=int,
        default=None,
        help="routing: rollouts per batch (32); generate: rows (56)",
    )
    b.add_argument(
        "--steps", type=int, default=None, help="step, trl: timed steps per arm (4; trl 8)"
    )
    b.add_argument("--warmup", type=int, default=1, help="step, trl: untimed steps first")
    b.add_argument("--preset", default="toy", help="step: toy | leetcode-qwen3-4b | ...")
    b.add_argument(
        "--random-weights",
        action="store_true",
        help="step: random weights of the preset model's published shape (no hub)",
    )
    b.add_argument(
        "--shape",
        default=None,
        choices=["toy", "qwen3-vocab-tiny", "qwen3-1.7b", "qwen3-4b"],
        help="generate: a published shape with random weights (default qwen3-vocab-tiny); "
        "step: with --random-weights",
    )
    b.add_argument("--arms", default=None, help="step: comma-separated (default per preset)")
    b.add_argument(
        "--set", action="append", metavar="FIELD=VALUE", help="step, trl: config overrides"
    )
    bg = b.add_argument_group("generate (random weights of a published shape)")
    bg.add_argument("--new-tokens", type=int, default=32)
    bg.add_argument("--prompt-len", type=int, default=256)
    bg.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    bg.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    bg.add_argument("--cache", default="auto", choices=["auto", "dynamic", "static"])
    bg.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the decode step (static cache; default: on with CUDA)",
    )
    b.set_defaults(func=cmd_bench)

    k = sub.add_parser(
        "kernels",
        help="the CPU kernels in use (VGROUT_CPU_KERNELS) and their numeric fingerprint",
        description="Print the CPU kernel mode, torch's kernels, MKL's branch and a fingerprint: "
        "a hash of a small seeded forward, backward and sampling pass through the operations the "
        "toy uses. Machines whose fingerprints differ will not re-run each other's numbers; "
        "equal fingerprints are a quick check that they should.",
    )
    k.set_defaults(func=cmd_kernels)

    t = sub.add_parser("toy", help="build (or reuse) the cached toy base model")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--force", action="store_true")
    t.set_defaults(func=cmd_toy)

    for name, func, helptext in (
        ("train", cmd_train, "one GRPO run into a run folder"),
        (
            "decision",
            cmd_decision,
            "the decision experiment (routeV real/placebo, none, plain, absorb, oracle)",
        ),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--preset", default="toy", help="toy | smoke | leetcode-qwen3-4b")
        s.add_argument("--seed", type=int, default=None)
        s.add_argument("--init", default=None, help="adapter init")
        s.add_argument("--out", default=None, help="output folder")
        s.add_argument(
            "--set", action="append", metavar="FIELD=VALUE", help="override any config field"
        )
        s.set_defaults(func=func)
        if name == "train":
            s.add_argument(
                "--arm",
                default=None,
                help="none|plain|absorb|routeA|routeV|oracle|... or ARM_placebo (Haar direction, "
                "placebo_seed 1000 + seed, as in sweeps)",
            )
            s.add_argument("--resume", default=None, metavar="DIR", help="continue a killed run")
            s.add_argument(
                "--threads",
                type=int,
                default=None,
                help="torch CPU threads (a run re-runs bit for bit at the thread count recorded "
                "in its provenance.json; sweeps with --jobs 2 use 1)",
            )
        else:
            s.add_argument("--seeds", type=int, default=1, help="seeds per arm")
            s.add_argument("--jobs", type=int, default=1, help="arms run in parallel processes")

    e = sub.add_parser(
        "eval",
        help="re-run the final evaluation of a run folder; with --set, score a run (or every "
        "finished run of a sweep folder, per group with intervals) on another evaluation set",
    )
    e.add_argument("run_dir")
    e.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="evaluate on another set: modes, eval_problems, final_eval_n, eval_temperature, "
        "eval_seed (vgrout eval never writes into the run folder)",
    )
    e.add_argument("--base-model", action="store_true", help="evaluate the run's base model")
    e.add_argument("--out", default=None, help="also write the JSON result to this file")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser(
        "export", help="a run's deployed or as-trained model as a PEFT LoRA or merged HF folder"
    )
    x.add_argument("run_dir")
    x.add_argument("--state", required=True, help="deployed (quarantine removed) | as-trained")
    x.add_argument("--out", required=True, help="output folder (must not exist)")
    x.add_argument("--merged", action="store_true", help="a full model with the delta merged in")
    x.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    x.add_argument("--base", default=None, help="base model folder, if the run's is not found")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="write report.md + plots for a run, decision or sweep folder")
    r.add_argument("run_dir")
    r.add_argument(
        "--classify",
        action="store_true",
        help="sweep folder: first run `vgrout classify` on finished runs that lack classify.json",
    )
    r.add_argument(
        "--classify-arms",
        default=None,
        metavar="ARM,ARM",
        help="sweep folder: classify only these arms' runs (e.g. routeV,routeV_placebo)",
    )
    r.add_argument(
        "--reading",
        default=None,
        metavar="FILE",
        help="sweep folder: a hand-written Markdown reading of the numbers, shown under the arms",
    )
    r.add_argument(
        "--publish",
        default=None,
        metavar="DIR",
        help="sweep folder: also copy report.md, its plots and runs.csv into DIR",
    )
    r.set_defaults(func=cmd_report)

    ix = sub.add_parser(
        "index",
        help="INDEX.md + all-runs.csv over every published sweep folder (docs/evidence); "
        "CLAIMS.md from its claims.toml",
    )
    ix.add_argument("dir", nargs="?", default="docs/evidence")
    ix.set_defaults(func=cmd_index)

    sw = sub.add_parser("sweep", help="arms x inits x seeds x any field, as Ray tasks; aggregate")
    sw.add_argument("--preset", default="toy")
    sw.add_argument("--grid", action="append", metavar="FIELD=V1,V2", help="a grid axis")
    sw.add_argument("--set", action="append", metavar="FIELD=VALUE", help="fixed override")
    sw.add_argument("--out", required=True, help="sweep folder")
    sw.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    sw.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs")
    sw.add_argument("--backend", default="ray", choices=["ray", "local"])
    sw.add_argument("--spec", default=None, help="TOML/JSON sweep spec file")
    sw.add_argument("--jobs", type=int, default=1, help="local backend: parallel processes")
    sw.add_argument("--force-grid", action="store_true", help="accept a changed grid")
    sw.set_defaults(func=cmd_sweep)

    c = sub.add_parser("classify", help="offline classifier analysis of a run's logged rollouts")
    c.add_argument("run_dir")
    c.add_argument("--max-rollouts", type=int, default=512)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--n-haar", type=int, default=100)
    c.set_defaults(func=cmd_classify)

    dm = sub.add_parser("demo", help="what `make demo` runs")
    dm.add_argument(
        "--out", default=None, help="default runs/demo (runs/demo-portable under portable kernels)"
    )
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from vgrout import kernels

        kernels.apply()  # before anything imports torch: the variables are read once
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"vgrout {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
