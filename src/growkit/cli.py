"""The ``growkit`` command: ``growkit train | plot``.

Errors growkit raises on purpose (`GrowkitError`) are printed as one line, ``growkit: error: ...``,
with exit status 2 and no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from growkit.errors import GrowkitError


def _cmd_train(args: argparse.Namespace) -> int:
    from growkit.train import RunConfig, train

    cfg = RunConfig.from_toml(args.config, args.set) if args.config else RunConfig.default(args.set)
    result = train(cfg, resume=args.resume_from or args.resume)
    print(f"run dir: {result['run_dir']}")
    for p in result["plots"]:
        print(f"plot: {p}")
    if "val_loss" in result:
        print(f"final val_loss: {result['val_loss']:.4f}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from growkit.train.plots import plot_runs

    out = Path(args.out) if args.out else Path(args.runs[0]) / "plots"
    for p in plot_runs([Path(r) for r in args.runs], out):
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="growkit", description="Grow transformers while they train.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run a (progressive) pre-training run from a TOML config")
    p.add_argument("--config", "-c", help="TOML run config (default: the built-in tiny GPT run on Shakespeare)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key, e.g. --set train.max_steps=50 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in run.dir from its latest checkpoint")
    p.add_argument("--resume-from", metavar="CKPT_DIR", help="continue from this checkpoint directory")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("plot", help="plot val loss vs FLOPs and vs wall-clock for one or more runs")
    p.add_argument("runs", nargs="+", help="run directories (each holds metrics.jsonl)")
    p.add_argument("--out", help="output folder for the PNGs (default: RUN/plots of the first run)")
    p.set_defaults(func=_cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GrowkitError as e:
        print(f"growkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("growkit: interrupted; the last checkpoint is intact (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
