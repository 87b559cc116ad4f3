"""Ranking fidelity of NAS-Bench-Macro supernets: how well does a supernet trained with `--sharing ofa`
or `--sharing spos` rank the benchmark's networks by their trained accuracy, and from which epoch on?

For every supernet directory given (`nas supernet train --space nasbench_macro`) and every epoch
whose weights it keeps (weights_epochN.pt after epochs 1, 2, 4, 8, ...; the last finished epoch
from state.pt), each network is scored as `nas search --evaluator supernet:DIR` scores a
candidate (`nas.supernet.scoring.score`): its slice of the supernet, BatchNorm statistics
re-estimated on 512 images of the search's training subset, then top-1 accuracy on the search's
validation split. Both come from the supernet's training images (`nas.data.split_indices`, with
the supernet's seed, so the validation images are none it trained on): the validation split is
the first images of the 10% held out, as many as a search of that data uses (`--train-subset`,
by default the search's: 5,000 training and 556 validation images for CIFAR-10).

Ground truth: all 3,969 distinct NAS-Bench-Macro networks (`mean_acc`; `--sample N`: a seeded
sample of N of them, the one experiments/zero_cost_fidelity.py --limit N scores), overall and
within latency bands [0.9 T, T] for T the 25th, 50th and 75th percentile of `local_cpu_table_ms`
(experiments/results/nasbench_macro_latency.csv). Per supernet, epoch and set: Kendall's tau and
Spearman's rho (scipy) and the seconds per candidate (wall time of `score`, the subnet's copy
of its weights included).

Per-network scores go to a state file in the user's cache after every chunk of networks
(atomically), keyed by a fingerprint of the weights and the split, so a killed run continues
where it stopped and a supernet trained again is scored again:
${XDG_CACHE_HOME:-~/.cache}/hw-nas/experiments/supernet_macro_scores.csv.

    nas supernet train --space nasbench_macro --data cifar10:DIR --sharing ofa --epochs 32 --out runs/macro-ofa
    nas supernet train --space nasbench_macro --data cifar10:DIR --sharing spos --epochs 32 --out runs/macro-spos
    python experiments/supernet_macro_fidelity.py --supernet runs/macro-ofa runs/macro-spos [--sample N]

Writes experiments/results/supernet_macro_fidelity{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nas.benchmarks.nasbench_macro import distinct  # noqa: E402
from nas.data import flips, parse_spec  # noqa: E402
from nas.device import add_device_argument, resolve_device  # noqa: E402
from nas.evaluation import cached_data  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_setup import PROXY_DEFAULTS  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from nas.supernet.directory import EpochNotKept, SupernetConfig, SupernetDir  # noqa: E402
from nas.supernet.model import Supernet  # noqa: E402
from nas.supernet.predictor import AccuracyPredictor  # noqa: E402
from nas.supernet.scoring import RECALIBRATE_IMAGES, score  # noqa: E402
from macro_bands import LATENCY_CSV, SEED, rank_vote, sets_of  # noqa: E402
from results_paths import experiment_state, shown  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.space import get_space  # noqa: E402
from zero_cost_fidelity import fidelity, nasbench_group  # noqa: E402
from zero_cost_fidelity import read_state as read_zero_cost_state  # noqa: E402

HERE = Path(__file__).resolve().parent
STATE_COLUMNS = ["weights", "split", "code", "accuracy", "seconds", "supernet", "epoch"]
COMBINED_WITH = "naswot"  # the best zero-cost score on NAS-Bench-Macro (experiments/results/zero_cost_fidelity.md)


def state_path() -> Path:
    return experiment_state("supernet_macro_scores.csv")


def read_state() -> pd.DataFrame:
    path = state_path()
    if not path.exists():
        return pd.DataFrame(columns=STATE_COLUMNS)
    return pd.read_csv(path, dtype={"weights": str, "split": str, "code": str})


def fingerprint(model: Supernet) -> str:
    """Of the weights themselves: a snapshot and state.pt of one epoch agree, a retrained supernet does not."""
    h = hashlib.sha256()
    for key, t in model.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def search_subset(cfg: SupernetConfig, given: int | None) -> int | None:
    """The training subset a search of the supernet's data uses by default, unless `given`."""
    return given if given is not None else PROXY_DEFAULTS.get(parse_spec(cfg.data)[0], {}).get("train_subset")


def score_epoch(sdir: SupernetDir, epoch: int, codes: list[str], args: argparse.Namespace, state: pd.DataFrame,
                device: torch.device, score_missing: bool = True) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Score every network of `codes` the state lacks for this epoch's weights, saving the state after
    each chunk; (the state, this epoch's `value` and `seconds` by code). Without `score_missing`, an
    epoch the state does not hold whole is left alone: (the state, None)."""
    model, cfg = sdir.trained(epoch)
    subset = search_subset(cfg, args.train_subset)
    key = (fingerprint(model), f"train_subset={subset} seed={cfg.seed}")

    def mine(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[(frame["weights"] == key[0]) & (frame["split"] == key[1])]

    todo = [c for c in codes if c not in set(mine(state)["code"])]
    if todo and not score_missing:
        return state, None
    if todo:
        model.to(device)
        data = cached_data(cfg.data, cfg.resolution, subset, cfg.seed, str(device))  # the search's own cache
    with tqdm(total=len(todo), unit="net", desc=f"{sdir.path.name} ({cfg.sharing}) epoch {epoch}",
              dynamic_ncols=True, disable=not todo) as bar:
        for i in range(0, len(todo), args.chunk):
            rows = []  # a chunk is saved whole: a kill loses at most this chunk
            for code in todo[i:i + args.chunk]:
                start = time.perf_counter()
                _, accuracy = score(model, model.candidate([int(c) for c in code]), data, flips(cfg.data), cfg.seed)
                rows.append([*key, code, accuracy, time.perf_counter() - start, str(sdir.path), epoch])
                bar.update(1)
            state = pd.concat([state, pd.DataFrame(rows, columns=STATE_COLUMNS)], ignore_index=True)
            write_csv(state_path(), state)
    values = mine(state).drop_duplicates("code", keep="last").set_index("code")
    return state, values.rename(columns={"accuracy": "value"})[["value", "seconds"]]


def predicted(values: pd.DataFrame, codes) -> pd.DataFrame:
    """The accuracy predictor (`nas.supernet.predictor`) fitted on the supernet's scores of the networks
    scored (`values`), applied to every network of `codes`: its `value` and `seconds` (per candidate)."""
    predictor = AccuracyPredictor.for_space(get_space("nasbench_macro"), vectors(values.index), values["value"])
    start = time.perf_counter()
    value = predictor.predict(vectors(codes))
    return pd.DataFrame({"value": value, "seconds": (time.perf_counter() - start) / len(value)}, index=codes)


def naswot_scores() -> pd.DataFrame | None:
    """NASWOT's scores of NAS-Bench-Macro's networks from experiments/zero_cost_fidelity.py's state
    file (`value`, `seconds`), None before that study has scored any."""
    state = read_zero_cost_state()
    mine = state[(state["group"] == "nasbench_macro") & (state["score"] == COMBINED_WITH)]
    return mine.set_index("network")[["value", "seconds"]] if len(mine) else None


def combined(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """A vote of two scores over the networks both scored: the mean of their rank percentiles (nothing
    fitted, so nothing to hold out); a candidate costs both scores."""
    value = rank_vote(a["value"], b["value"])
    return pd.DataFrame({"value": value, "seconds": a.loc[value.index, "seconds"] + b.loc[value.index, "seconds"]})


def vectors(codes) -> np.ndarray:
    return np.array([[int(c) for c in code] for code in codes])


def train_command(sdir: SupernetDir, cfg: SupernetConfig) -> str:
    subset = f" --train-subset {cfg.train_subset}" if cfg.train_subset is not None else ""
    return (f"nas supernet train --space {cfg.space} --data {shown(cfg.data)}{subset} --resolution {cfg.resolution} "
            f"--epochs {cfg.epochs} --batch-size {cfg.batch_size} --lr {cfg.lr} --optimizer {cfg.optimizer} "
            f"--random-candidates {cfg.random_candidates} --seed {cfg.seed} --sharing {cfg.sharing} "
            f"--sampling {cfg.sampling} --device {cfg.device} --out {shown(sdir.path)}")


def plot(summary: pd.DataFrame, path: Path) -> None:
    sets = list(dict.fromkeys(summary["set"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.4), sharey=True, squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for (label, sharing, scores), g in summary[summary["set"] == set_name].groupby(
                ["supernet", "sharing", "scores"], sort=False):
            ax.plot(g["epoch"], g["kendall_tau"], marker="o" if scores == "supernet" else "s",
                    ls="-" if scores == "supernet" else "--", label=f"{sharing} {scores} ({Path(label).name})")
        ax.set_xscale("log", base=2)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(title=set_name, xlabel="supernet epoch")
    axes[0][0].set_ylabel("Kendall tau vs mean_acc")
    axes[0][-1].legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def run(args: argparse.Namespace) -> None:
    if args.chunk < 1 or (args.sample is not None and args.sample < 2):
        raise UserError(f"--chunk must be positive and --sample at least 2, got {args.chunk} and {args.sample}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    group, latency = nasbench_group(args.sample)
    accuracy = group.networks["accuracy"]
    codes = list(accuracy.index)
    sdirs = [SupernetDir(d) for d in args.supernet]
    for sdir in sdirs:  # before hours of scoring the first
        if sdir.config().space != "nasbench_macro":
            raise UserError(f"supernet {shown(sdir.path)} is over space {sdir.config().space}, not nasbench_macro")
    kept = {epoch for sdir in sdirs for epoch in sdir.saved_epochs()}
    if args.epochs is not None and not set(args.epochs) <= kept:
        raise UserError(f"no supernet keeps the weights of epoch(s) "
                        f"{', '.join(str(e) for e in args.epochs if e not in kept)} (--epochs; kept: "
                        f"{', '.join(map(str, sorted(kept)))})")
    sets, band_lines = sets_of(accuracy, latency)
    every_set, _ = sets_of(distinct()["mean_acc"], latency)  # what the predictor ranks: every network
    state, naswot = read_state(), naswot_scores()
    rows, supernets, splits = [], [], set()
    for sdir in sdirs:
        cfg = sdir.config()
        subset = search_subset(cfg, args.train_subset)
        splits.add(f"{shown(cfg.data)}: {f'{subset:,}' if subset else 'all'} training images (seed {cfg.seed})")
        for epoch in sdir.saved_epochs():
            try:
                state, values = score_epoch(sdir, epoch, codes, args, state, device,
                                            score_missing=args.epochs is None or epoch in args.epochs)
            except EpochNotKept:  # the last finished epoch of a training still running beside this one
                continue          # when it started: its weights are gone now
            if values is None:  # not asked for and not scored before
                continue
            prediction = predicted(values, every_set["all"].index)
            kinds = [("supernet", sets, values), ("predictor", every_set, prediction)]
            if naswot is not None:
                kinds += [(f"supernet+{COMBINED_WITH}", sets, combined(values, naswot)),
                          (f"predictor+{COMBINED_WITH}", every_set, combined(prediction, naswot))]
            for scores, by_set, per_code in kinds:
                for set_name, truth in by_set.items():
                    f = asdict(fidelity(set_name, cfg.sharing, truth, per_code))
                    rows.append({"supernet": shown(sdir.path), "sharing": cfg.sharing, "epoch": epoch,
                                 "scores": scores, "set": set_name, "n": f["n"], "kendall_tau": f["kendall_tau"],
                                 "spearman_rho": f["spearman_rho"], "seconds_per_candidate": f["seconds_per_candidate"]})
        epochs = pd.read_csv(sdir / "epochs.csv")
        supernets.append(f"- `{train_command(sdir, cfg)}`: {len(epochs)} of {cfg.epochs} epochs trained, "
                         f"{epochs['seconds'].mean():.0f} s per epoch; scored at epochs "
                         f"{', '.join(map(str, sdir.saved_epochs()))}")
    summary = pd.DataFrame(rows)
    write_csv(args.out / "supernet_macro_fidelity.csv", summary)

    networks = (f"a seeded sample of {len(codes)} of the 3,969 distinct networks (`--sample {args.sample}`, "
                f"seed {SEED})" if args.sample else f"all {len(codes)} distinct networks")
    command = ("python experiments/supernet_macro_fidelity.py --supernet " + " ".join(shown(d.path) for d in sdirs)
               + (f" --sample {args.sample}" if args.sample else "")
               + (f" --epochs {','.join(map(str, args.epochs))}" if args.epochs else "")
               + (f" --train-subset {args.train_subset}" if args.train_subset is not None else "")
               + f" --device {args.device} --threads {args.threads}")
    lines = ["# NAS-Bench-Macro supernets: ranking fidelity by epoch and weight sharing", "",
             "Reproduce: train the supernets, then score (per-network scores: the state file "
             "`${XDG_CACHE_HOME:-~/.cache}/hw-nas/experiments/supernet_macro_scores.csv`; a killed run resumes):", "",
             *supernets, f"- `{command}`", "",
             f"Networks: {networks}; ground truth NAS-Bench-Macro `mean_acc` (CIFAR-10 test accuracy, mean of 3 "
             f"trainings). Each is scored as `nas search --evaluator supernet:DIR` scores it: BatchNorm "
             f"recalibration on {RECALIBRATE_IMAGES} images of the search's training subset, then accuracy on "
             f"the validation images the search carves from the training set with the supernet's seed (none the "
             f"supernet trained on): {'; '.join(sorted(splits))}. Latency bands [0.9 T, T] for T a percentile of "
             f"`local_cpu_table_ms` over all networks of {shown(LATENCY_CSV)}:", *band_lines, "",
             f"`seconds_per_candidate`: wall time of `nas.supernet.scoring.score` on {device} with {args.threads} "
             f"torch thread(s), on a machine of {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at "
             f"the end: other jobs slow it); scores read back from the state file keep the time they took then.",
             "",
             ("`scores`: `supernet`, the networks scored by the supernet (n as above); `predictor`, the accuracy "
              "predictor of `nas.supernet.predictor` (ridge regression on the one-hot choices) fitted on those "
              "scores and applied to every one of the 3,969 networks, each set then holding all its networks; "
              "its seconds per candidate are the prediction's alone (the scoring it was fitted on is above). "
              f"`supernet+{COMBINED_WITH}` and `predictor+{COMBINED_WITH}`: a vote of that score and the zero-cost "
              f"score {COMBINED_WITH} (experiments/zero_cost_fidelity.py's scores of the same networks), the mean "
              "of their rank percentiles; nothing is fitted to the vote."),
             "",
             markdown_table(summary, ".3g")]
    write_text(args.out / "supernet_macro_fidelity.md", "\n".join(lines) + "\n")
    plot(summary, args.out / "supernet_macro_fidelity.png")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", nargs="+", required=True, metavar="DIR",
                    help="nasbench_macro supernet directories (nas supernet train), e.g. one per --sharing")
    ap.add_argument("--sample", type=int, metavar="N", help="score a seeded sample of N networks, not all 3,969")
    ap.add_argument("--train-subset", type=int, metavar="N",
                    help="the search's training subset (default: a search's for the supernet's data)")
    ap.add_argument("--epochs", type=lambda text: [int(e) for e in text.split(",")], metavar="E[,E...]",
                    help="score these kept epochs (default: every kept one); epochs scored earlier are reported too")
    ap.add_argument("--chunk", type=int, default=50, help="networks between saves of the state file")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_device_argument(ap)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
