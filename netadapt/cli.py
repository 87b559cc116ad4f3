"""`netadapt refine RUN_DIR`: trim a search winner's (or an exported subnet's) channels to a latency budget."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.cli import _Parser, run
from nas.device import add_device_argument
from netadapt.refine import OBJECTIVES


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netadapt", description="NetAdapt: fit a search winner to a latency budget.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("refine", help="trim channels step by step, fine-tuning as it goes",
                       description="Reads RUN_DIR's winner (final/winner.json when `nas train` ran, else "
                                   "best/), or the subnet `nas supernet export` wrote to RUN_DIR (fine-tuned "
                                   "on its supernet's data and resolution), trims it until the target's "
                                   "latency table predicts the budget is met, and writes RUN_DIR/netadapt/ "
                                   "(or --out). Rerun the same command to resume a killed run. Exit status 1 "
                                   "when no unit can be trimmed further before the budget is met.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                   help="a `nas search` run directory, or the --out of `nas supernet export`")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--target-latency", type=float, metavar="MS", help="latency budget in ms")
    budget.add_argument("--target-ratio", type=float, metavar="R",
                        help="budget as a fraction of the winner's latency (default 0.8)")
    p.add_argument("--target", metavar="NAME", help="latency target (default: the run's; needed for an "
                                                    "exported subnet)")
    p.add_argument("--step-ratio", type=float, metavar="R", help="latency cut per iteration, as a fraction of the "
                                                     "starting latency (default 0.01, MobileNetV3)")
    p.add_argument("--step-decay", type=float, metavar="D", help="multiply the cut by this every iteration "
                                                     "(NetAdapt's decaying schedule, e.g. 0.96; default 1)")
    p.add_argument("--short-term-steps", type=int, metavar="N", help="fine-tuning steps per proposal (default 20)")
    p.add_argument("--long-term-epochs", type=float, metavar="E", help="final fine-tuning epochs (default 1)")
    p.add_argument("--objective", choices=OBJECTIVES, help="slope: best accuracy change per ms saved "
                                                            "(MobileNetV3, default); accuracy: best accuracy (NetAdapt)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output directory (default RUN_DIR/netadapt)")
    p.add_argument("--data", metavar="SPEC", help="data spec (default: the run's; an exported subnet keeps "
                                                  "its supernet's)")
    p.add_argument("--train-subset", type=int, metavar="N", help="training images (default: the run's)")
    p.add_argument("--batch-size", type=int, metavar="N", help="fine-tuning batch size (default: the run's, else 128)")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default 0.01)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    add_device_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=refine_command)
    return parser


def refine_command(args) -> int:
    """`netadapt refine`: `nas.api.refine` with the command's arguments, and its result printed."""
    from nas.api import refine

    refined = refine(args.run_dir, args.target_ratio, target_latency=args.target_latency, target=args.target,
                     data=args.data, train_subset=args.train_subset, step_ratio=args.step_ratio,
                     step_decay=args.step_decay, short_term_steps=args.short_term_steps,
                     long_term_epochs=args.long_term_epochs, objective=args.objective, batch_size=args.batch_size,
                     lr=args.lr, out=args.out, device=args.device, threads=args.threads,
                     progress=not args.no_progress)
    r = refined.result
    measured = ""
    if r["final_measured_ms"] is not None:
        measured = f" (measured here {r['start_measured_ms']:.2f} -> {r['final_measured_ms']:.2f} ms)"
    print(f"{r['start_ms']:.3f} -> {r['final_ms']:.3f} ms on {r['target']}{measured}, budget "
          f"{r['budget_ms']:.3f} ms, {r['iterations']} iteration(s); val acc {r['start_val_acc']:.4f} -> "
          f"{r['final_val_acc']:.4f}, test acc {r['start_test_acc']:.4f} -> {r['final_test_acc']:.4f}")
    print(f"wrote {refined.path}")
    return 0 if refined.within_budget else 1


def main(argv=None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
