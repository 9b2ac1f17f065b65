"""The ``growkit`` command: ``growkit train | grow | export | plot | bench``.

Errors growkit raises on purpose (`GrowkitError`) are printed as one line, ``growkit: error: ...``,
with exit status 2 and no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from growkit.errors import GrowkitError, GrowkitWarning


def _cmd_train(args: argparse.Namespace) -> int:
    from growkit.train import RunConfig, train

    cfg = RunConfig.from_toml(args.config, args.set) if args.config else RunConfig.main(args.set)
    result = train(cfg, resume=args.resume_from or args.resume, force_unlock=args.force_unlock)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    print(f"run dir: {result['run_dir']}")
    for p in result["plots"]:
        print(f"plot: {p}")
    if "val_loss" in result:
        print(f"final val_loss: {result['val_loss']:.4f}")
    return 0


def _parse_pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise GrowkitError(f"cannot read {what} {item!r}: write it as name=value, e.g. d_model=512")
        out[key.strip()] = value.strip()
    return out


def _cmd_grow(args: argparse.Namespace) -> int:
    from growkit.grow.spec import GrowthSpec

    if args.matrix:
        from growkit.grow.matrix import format_matrix, growth_matrix

        cells = growth_matrix()
        print(format_matrix(cells))
        print("\nrefused, and why:")
        for c in cells:
            if c.status == "refused":
                print(f"- {c.arch} {c.dim} {c.method}: {c.reason}")
        return 0
    if not ((args.source or args.hf) and args.out and args.to) or (args.source and args.hf):
        raise GrowkitError("growkit grow needs --from CKPT or --hf DIR, --out DIR and at least one --to dim=size "
                           "(or --matrix)")
    sizes = {}
    for dim, value in _parse_pairs(args.to, "--to").items():
        if not value.isdigit():
            raise GrowkitError(f"--to {dim}={value}: the size must be a whole number")
        sizes[dim] = int(value)
    methods = _parse_pairs([m for m in args.method if "=" in m], "--method")
    plain = [m for m in args.method if "=" not in m]
    default = plain[-1] if plain else "masked"
    method: str | dict[str, str] = {**methods, "*": default} if methods else default
    spec = GrowthSpec.from_dict({**sizes, "method": method, "depth_placement": args.placement})
    if args.hf:
        return _grow_hf(args, spec)
    from growkit.train.grow_checkpoint import grow_checkpoint

    result = grow_checkpoint(Path(args.source), spec, Path(args.out), force_unlock=args.force_unlock)
    changed = {k: (v, result["new"][k]) for k, v in result["old"].items() if result["new"][k] != v}
    _report_growth(changed, result["params"], result["max_abs_dlogits"], str(args.out))
    return 0


def _report_growth(changes: dict[str, tuple[Any, Any]], params: tuple[int, int], err: float, wrote: str) -> None:
    for k, (a, b) in changes.items():
        print(f"{k}: {a} → {b}")
    print(f"parameters: {params[0]:,} → {params[1]:,}")
    print(f"max |Δlogits| (float64): {err:.3e}")
    print(f"wrote {wrote}")


def _grow_hf(args: argparse.Namespace, spec: Any) -> int:
    """``growkit grow --hf IN --out OUT``: from_hf → grow → to_hf → save_pretrained (with IN's tokenizer)."""
    import torch

    from growkit.adapters import from_hf
    from growkit.adapters.hf_io import load_pretrained, save_pretrained
    from growkit.grow import check_preserved, grow

    hf = load_pretrained(args.hf)
    old = from_hf(hf)
    changes = spec.changes(old.cfg)
    masked = [d for d in changes if spec.method_for(d) == "masked"]
    if masked:
        raise GrowkitError(f"--hf grows a saved model in one step, and masked growth ({', '.join(masked)}) only "
                           f"takes effect while training ramps its masks: pick --method zero, split, copy or stack")
    new, _ = grow(old, spec)
    tokens = torch.randint(0, old.cfg.vocab_size, (1, min(16, old.cfg.max_seq_len)),
                           generator=torch.Generator().manual_seed(0))
    err = check_preserved(old, new, tokens)
    from growkit.train.runlock import RunLock

    with RunLock(Path(args.out), beside=True, force=args.force_unlock):
        save_pretrained(new, args.out, like=hf, source=args.hf)
    _report_growth(changes, (old.num_params(), new.num_params()), err, f"{args.out} ({type(hf).__name__})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """``growkit export RUN_OR_CKPT --out DIR [--base HF_DIR]``: a run's model as a save_pretrained folder."""
    from growkit.train.export import export_run

    r = export_run(args.source, args.out, args.base, force_unlock=args.force_unlock)
    print(f"step {r['step']}: {r['params']:,} parameters as {r['hf_class']}; tokenizer: {r['tokenizer'] or 'none'}")
    print(f"max |Δlogits| growkit vs the reloaded folder (float32): {r['max_abs_dlogits']:.3e}")
    print(f"wrote {r['out']}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from growkit.train.plots import plot_runs

    out = Path(args.out) if args.out else Path(args.runs[0]) / "plots"
    for p in plot_runs([Path(r) for r in args.runs], out):
        print(p)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from growkit.bench.speedup import run_speedup

    if args.bench == "envelope":
        from growkit.bench.envelope import run_envelope

        names = [n.strip() for n in args.schedules.split(",") if n.strip()] if args.schedules else None
        from dataclasses import replace

        from growkit.bench.envelope import PRESETS

        preset = PRESETS["quick" if args.quick else "full"]
        if args.jobs is not None:
            if args.jobs < 1:
                raise GrowkitError(f"--jobs must be at least 1 (runs trained at once), got {args.jobs}")
            preset = replace(preset, jobs=args.jobs)
        run_envelope(args.out or ("runs/bench-envelope-quick" if args.quick else "runs/bench-envelope"),
                     preset, args.regime, names, remeasure=args.remeasure)
        return 0

    names = [n.strip() for n in args.schedules.split(",") if n.strip()] if args.schedules else None
    out = args.out or ("runs/bench-speedup-quick" if args.quick else "runs/bench-speedup")
    run_speedup(out, "quick" if args.quick else "full", names, remeasure=args.remeasure)
    return 0


def _force_unlock(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force-unlock", action="store_true",
                   help=f"take over the write lock of {what} from a holder that cannot be checked (another host, "
                        f"or a process without an OS lock) and is known to be gone; warns whose lock it overrides "
                        f"(a lock the OS holds for a running process is never overridden)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="growkit", description="Grow transformers while they train.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run a (progressive) pre-training run from a TOML config")
    p.add_argument("--config", "-c", help="TOML run config (default: the main job, configs/gpt-tiny-msg.toml: "
                                          "a tiny GPT grown progressively with MSG on Shakespeare)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key, e.g. --set train.max_steps=50 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in run.dir from its latest checkpoint")
    p.add_argument("--resume-from", metavar="CKPT_DIR", help="continue from this checkpoint directory")
    _force_unlock(p, "run.dir")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("grow", help="grow a checkpoint (model + optimizer state), or print the growth matrix")
    p.add_argument("--from", dest="source", metavar="CKPT", help="a checkpoint dir, or a run dir (its latest)")
    p.add_argument("--hf", metavar="IN_DIR", help="a Hugging Face save_pretrained folder (GPT-2, BERT, Llama) or a "
                   ".gguf file, instead of --from: --out gets a save_pretrained folder (needs growkit[hf])")
    p.add_argument("--to", action="append", default=[], metavar="DIM=SIZE", help="target size, e.g. d_model=512")
    p.add_argument("--method", action="append", default=[], metavar="NAME|DIM=NAME",
                   help="growth method for all dimensions (masked, zero, copy, split, stack, interpolate, tile) or one "
                        "dimension, e.g. --method n_layers=stack --method masked")
    p.add_argument("--placement", default="top", help="where new layers go: top, bottom, interleave, middle")
    p.add_argument("--out", metavar="DIR", help="the new checkpoint directory (must not exist)")
    p.add_argument("--matrix", action="store_true",
                   help="print which arch × dimension × method preserves the function, approximates or is refused")
    _force_unlock(p, "--out")
    p.set_defaults(func=_cmd_grow)

    p = sub.add_parser("export", help="write a run's model (its latest checkpoint) as a Hugging Face folder")
    p.add_argument("source", metavar="RUN_OR_CKPT", help="a run dir (its latest checkpoint) or a checkpoint dir")
    p.add_argument("--out", required=True, metavar="DIR", help="the save_pretrained folder to write (new or empty)")
    p.add_argument("--base", metavar="HF_DIR", help="HF folder or .gguf whose class, token ids and generation "
                   "config to keep (default: the run's model.hf)")
    _force_unlock(p, "--out")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("plot", help="plot val loss vs FLOPs and vs wall-clock for one or more runs")
    p.add_argument("runs", nargs="+", help="run directories (each holds metrics.jsonl)")
    p.add_argument("--out", help="output folder for the PNGs (default: RUN/plots of the first run)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("bench", help="benchmarks: growkit bench speedup | envelope")
    bench = p.add_subparsers(dest="bench", required=True)
    p = bench.add_parser("speedup", help="FLOPs and wall-clock saved by growth schedules vs a from-scratch frontier")
    p.add_argument("--quick", action="store_true", help="tiny model and budget: a smoke test (< 5 min)")
    p.add_argument("--out", help="folder of the runs and results (default runs/bench-speedup[-quick]); finished "
                                 "runs in it are reused")
    p.add_argument("--schedules", metavar="A,B,...", help="schedules to run besides the from-scratch frontier "
                   "(scratch, small, msg, zero, compound, stack, split, copy; default: the preset's selection)")
    p.add_argument("--remeasure", action="store_true",
                   help="run again the finished runs whose cores were shared with other processes (keeps the faster)")
    p.set_defaults(func=_cmd_bench)
    p = bench.add_parser("envelope", help="growth against the best from-scratch model of any size at each compute "
                         "(the envelope) and against an over-trained target's own frontier")
    p.add_argument("--quick", action="store_true", help="tiny ladder and budget: the whole pipeline in < 10 min")
    p.add_argument("--regime", default="both", choices=("compute-optimal", "over-trained", "both"))
    p.add_argument("--out", help="folder of the runs and results (default runs/bench-envelope[-quick]); finished "
                                 "runs in it are reused")
    p.add_argument("--schedules", metavar="A,B,...", help="growth schedules (follow, msg, late, zero, compound, "
                   "stack, split, copy, and the variants late50, stack10, stack50, stack-masked, stack-rewarm, "
                   "stack-wsd, follow-wsd, target-wsd; "
                   "default: the preset's selection)")
    p.add_argument("--remeasure", action="store_true",
                   help="run again the finished runs whose cores were shared with other processes (keeps the faster)")
    p.add_argument("--jobs", type=int, help="runs trained at once, one process each (default: the preset's; the "
                   "full preset trains 2 at a time, one thread each)")
    p.set_defaults(func=_cmd_bench)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
    """`GrowkitWarning`s (a damaged checkpoint skipped, a non-finite step skipped) as one line each."""
    if issubclass(category, GrowkitWarning):
        print(f"growkit: warning: {message}", file=sys.stderr)
    else:
        _default_show_warning(message, category, *args, **kw)


_default_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores the default display when main returns
            warnings.showwarning = _show_warning
            return args.func(args)
    except GrowkitError as e:
        print(f"growkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("growkit: interrupted; the last checkpoint is intact (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
