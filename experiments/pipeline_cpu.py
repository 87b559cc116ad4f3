"""The pipeline's result on a CPU, end to end, judged by NAS-Bench-Macro's ground truth.

For T = the median `local_cpu` latency of the 3,969 distinct networks (the `local_cpu_table_ms`
column of experiments/results/nasbench_macro_latency.csv, what a search sees), each method runs
`nas search --space nasbench_macro --target local_cpu --latency-target T --reward hard
--latency-window 0.9,1.0` (proposals outside [0.9 T, T] are rejected untrained) and scores its
candidates its own way:

  supernet  evolution, each candidate scored by the supernet (--supernet, `nas supernet train`)
  random    random search of --predictor-candidates networks scored by the same supernet (the
            predictor method's search), its top 5 by score
  predictor random search of --predictor-candidates networks scored by the supernet, an accuracy
            predictor fitted on their scores (nas.supernet.predictor), then every network of the
            window ranked by it (Once-for-All's accuracy predictor)
  vote      the predictor method's search and predictor, then every network of the window ranked by
            a vote of the predictor and a zero-cost score (--zc) computed here for each of them: the
            mean of their rank percentiles (experiments/results/supernet_macro_fidelity.md measures
            this vote above either alone)
  zc        evolution, scored by a zero-cost score at initialization (--zc, default naswot)
  train     evolution, each candidate trained briefly on CIFAR-10 (--train-epochs, --train-subset)

The top 5 candidates by the method's score are then looked up in the benchmark (the truth, as
if each had been trained 50 epochs with 3 seeds) and the best of them is the network found:
its mean benchmark accuracy, its rank among the in-budget networks (latency <= T) and its regret
against the in-budget optimum, in points. A last row gives a network drawn at random from the
window (the median over all of them), what no search at all returns.

Hours are wall-clock on the machine that ran it (this project's: 2 cores), the search's own
plus, for the supernet methods, the supernet's training (its epochs.csv). The 5 final
"trainings" are lookups and cost nothing here.

Each search runs in the user cache (${XDG_CACHE_HOME:-~/.cache}/hw-nas/experiments/pipeline/)
and resumes after a kill (`nas search --resume`); its wall time is saved every 30 s beside it.

    nas supernet train --space nasbench_macro --data cifar10:../shared/data --epochs 8 \\
        --out ~/.cache/hw-nas/experiments/supernet_macro_ofa
    python experiments/pipeline_cpu.py --supernet ~/.cache/hw-nas/experiments/supernet_macro_ofa \\
        --data cifar10:../shared/data [--methods supernet,random,zc,train] [--candidates 300]

The window holds 605 of the 3,969 networks and evolution proposes each network once, so the
default of 300 candidates per search is half the window: more would approach an exhaustive search.

Writes experiments/results/pipeline_cpu{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nas.benchmarks.nasbench_macro import canonical, distinct, records
from nas.evaluators import score_batches
from nas.search_setup import PROXY_DEFAULTS
from nas.zero_cost import score_arch
from nas.run_dir import write_csv, write_text
from nas.search_report import markdown_table
from nas.supernet.directory import SupernetDir
from nas.supernet.predictor import AccuracyPredictor
from macro_bands import SEED, proxy_arch, rank_vote, search_images, table_latency
from results_paths import experiment_state, shown
from script_main import run_script
from search_spaces.atomic import atomic_path
from search_spaces.errors import UserError
from search_spaces.space import get_space
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
WINDOW = (0.9, 1.0)
TOP = 5
METHODS = ("supernet", "random", "predictor", "vote", "zc", "train")


@dataclass(frozen=True)
class Method:
    """One row of the table: how the search proposes (controller) and scores (evaluator) candidates."""
    name: str
    controller: str
    evaluator: str
    trials: int
    options: tuple[str, ...] = ()
    supernet: Path | None = None   # its training hours count too
    supernet_epoch: int | None = None  # the weights of this epoch (None: the last): its hours up to it
    rank_all: bool = False         # rank the whole window by a predictor fitted on the search's scores
    vote: str | None = None        # ... by a vote of that predictor and this zero-cost score
    search: str = ""               # whose search it runs (default its own): the vote reuses the predictor's

    def about(self) -> str:
        evaluator = self.evaluator.replace(str(self.supernet), "SUPERNET") if self.supernet else self.evaluator
        ranked = f", then the window ranked by a vote of a predictor and {self.vote}" if self.vote else \
            ", then the window ranked by a predictor" if self.rank_all else ""
        return f"{self.controller}, {evaluator}{ranked}"


def methods(args) -> list[Method]:
    data = ("--data", args.data)
    epoch = args.supernet_epoch
    sn = dict(evaluator=f"supernet:{args.supernet}" + (f"@{epoch}" if epoch else ""), supernet=args.supernet,
              supernet_epoch=epoch)
    at = f"-epoch{epoch}" if epoch else ""  # another row of the table than the last epoch's
    table = {
        "supernet": Method(f"supernet{at}", "evolution", trials=args.candidates, **sn),
        # the predictor's search is a random search scored by the supernet: its top 5 by score, no predictor
        "random": Method(f"random{at}", "random", trials=args.predictor_candidates, search="predictor", **sn),
        "predictor": Method(f"predictor{at}", "random", trials=args.predictor_candidates, rank_all=True,
                            search="predictor", **sn),
        "vote": Method(f"vote{at}", "random", trials=args.predictor_candidates, rank_all=True, vote=args.zc,
                       search="predictor", **sn),
        # the search alone: a plain `nas search` with a zero-cost score also trains its top 5 (--final-top)
        "zc": Method("zc", "evolution", f"zc:{args.zc}", args.candidates,
                     (*data, "--resolution", "32", "--final-top", "0")),
        "train": Method("train", "evolution", "train", args.train_candidates,
                        (*data, "--resolution", "32", "--epochs", str(args.train_epochs),
                         "--train-subset", str(args.train_subset))),
    }
    return [table[name] for name in args.methods]


def cache_dir() -> Path:
    return experiment_state("pipeline")


def ok_trials(run: Path) -> pd.DataFrame:
    path = run / "trials.csv"
    if not path.exists():
        return pd.DataFrame()
    trials = pd.read_csv(path)
    return trials[trials["status"] == "ok"]


def run_search(method: Method, T: float, seed: int, runs: Path) -> tuple[Path, float]:
    """The method's search, run or resumed until it has `trials` scored candidates; (run dir, wall seconds)."""
    settings = zlib.crc32(" ".join([method.controller, method.evaluator, *method.options, f"{T:.6g}"]).encode())
    run = runs / f"{method.search or method.name}-seed{seed}-{settings:08x}"  # other settings: another search
    clock = run.with_suffix(".seconds.json")
    spent = json.loads(clock.read_text())["seconds"] if clock.exists() else 0.0
    if len(ok_trials(run)) >= method.trials:
        return run, spent
    if (run / "config.json").exists():
        cmd = ["--resume", str(run), "--trials", str(method.trials)]
    else:
        cmd = ["--space", "nasbench_macro", "--target", "local_cpu", "--latency-target", f"{T:.6g}",
               "--reward", "hard", "--latency-window", ",".join(map(str, WINDOW)), "--controller", method.controller,
               "--evaluator", method.evaluator, "--trials", str(method.trials), "--workers", "1",
               "--seed", str(seed), "--out", str(run), *method.options]
    print(f"{method.name}: nas search {' '.join(shown(c) for c in cmd)}", flush=True)
    runs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", *cmd])
    while True:
        try:
            code = proc.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            write_text(clock, json.dumps({"seconds": spent + time.time() - started}))
    spent += time.time() - started
    write_text(clock, json.dumps({"seconds": spent}))
    if code != 0:
        raise UserError(f"the {method.name} search stopped with exit code {code}; run again to resume it")
    return run, spent


def supernet_hours(directory: Path, epoch: int | None = None) -> float:
    """The supernet's training time, up to `epoch` (None: all of it)."""
    epochs = pd.read_csv(directory / "epochs.csv")
    return float(epochs.loc[epochs["epoch"] <= (epoch or epochs["epoch"].max()), "seconds"].sum()) / 3600


def judged(method: Method, run: Path, seconds: float, latency: pd.Series, T: float, data: str) -> dict:
    """The method's row: the best of its top-5 candidates by score, judged by the benchmark. With
    `method.rank_all`, the candidates are every network of the window, ranked by the accuracy
    predictor fitted on the search's scores."""
    trials = ok_trials(run)
    trials = trials.assign(code=[canonical("".join(str(v) for v in json.loads(v))) for v in trials["vector"]])
    scored = len(trials)
    if method.rank_all:
        trials = window_ranked(trials, latency, T)
    if method.vote:
        zc, zc_seconds = window_zero_cost(method.vote, trials["code"], data, run)
        seconds += zc_seconds
        vote = rank_vote(trials.set_index("code")["accuracy"], zc)
        trials = trials.assign(accuracy=vote.reindex(trials["code"]).to_numpy())
    top = trials.sort_values("accuracy", ascending=False).drop_duplicates("code").head(TOP)
    truth = records()["mean_acc"]
    top = top.assign(mean_acc=truth.reindex(top["code"]).to_numpy())
    found = top.sort_values("mean_acc", ascending=False).iloc[0]
    budget = in_budget(latency, T)
    hours = seconds / 3600 + (supernet_hours(method.supernet, method.supernet_epoch) if method.supernet else 0.0)
    return {"method": method.name, "search": method.about(), "hours": hours, "candidates": scored,
            "ranked": trials["code"].nunique(),
            "network": found["code"], "latency_ms": float(found["latency_ms"]),
            "accuracy": float(found["mean_acc"]), "rank": int((budget > found["mean_acc"]).sum() + 1),
            "in_budget": len(budget), "regret": float(budget.max() - found["mean_acc"]),
            "top1_by_score": top.iloc[0]["code"], "top1_regret": float(budget.max() - top.iloc[0]["mean_acc"])}


def window_ranked(trials: pd.DataFrame, latency: pd.Series, T: float) -> pd.DataFrame:
    """Every distinct network of the window with the predictor's score (`accuracy`), the predictor
    fitted on the supernet scores of the search's candidates (`nas.supernet.predictor`)."""
    codes = trials.groupby("code")["accuracy"].mean()  # a network scored twice: one point, its mean
    predictor = AccuracyPredictor.for_space(get_space("nasbench_macro"), [list(map(int, c)) for c in codes.index],
                                            codes.to_numpy())
    lat = latency.reindex(distinct().index)
    window = lat[(lat >= WINDOW[0] * T) & (lat <= WINDOW[1] * T)]
    return pd.DataFrame({"code": window.index, "latency_ms": window.to_numpy(),
                         "accuracy": predictor.predict([list(map(int, c)) for c in window.index])})


def window_zero_cost(name: str, codes: pd.Series, data: str, run: Path) -> tuple[pd.Series, float]:
    """Zero-cost score `name` of each network of `codes` (its proxy IR at 32 px, on a batch of the
    search's CIFAR-10 subset, as `--evaluator zc:NAME` scores it) and the seconds all of them took.
    Kept beside the search's run and resumed, 50 networks at a time."""
    path = run.with_name(f"{run.name}.{name}.csv")
    done = pd.read_csv(path, dtype={"code": str}).set_index("code") if path.exists() else \
        pd.DataFrame(columns=["value", "seconds"])
    todo = [c for c in codes if c not in done.index]
    if todo:
        batches = score_batches(search_images(data, 32), name, PROXY_DEFAULTS["cifar10"]["batch_size"], seed=SEED)
        for i in tqdm(range(0, len(todo), 50), desc=f"{name} of the window", unit="50 networks"):
            rows = {}
            for code in todo[i:i + 50]:
                arch = proxy_arch(code)
                start = time.perf_counter()
                rows[code] = {"value": score_arch(name, arch, batches), "seconds": time.perf_counter() - start}
            done = pd.concat([done, pd.DataFrame.from_dict(rows, orient="index")])
            write_csv(path, done.rename_axis("code").reset_index())
    return done["value"].astype(float), float(done.loc[list(codes), "seconds"].sum())


def in_budget(latency: pd.Series, T: float) -> pd.Series:
    """Mean accuracy of the distinct networks with latency <= T."""
    return distinct()["mean_acc"][latency.reindex(distinct().index) <= T]


def random_pick_row(latency: pd.Series, T: float) -> dict:
    """A network drawn uniformly from the window: the median of its regret and rank."""
    nets = distinct()
    lat = latency.reindex(nets.index)
    window = nets["mean_acc"][(lat >= WINDOW[0] * T) & (lat <= WINDOW[1] * T)]
    budget = in_budget(latency, T)
    ranks = np.array([(budget > a).sum() + 1 for a in window])
    return {"method": "no search", "search": f"a network drawn at random from the window (median of {len(window)})",
            "hours": 0.0, "candidates": 0, "ranked": 0, "network": "", "latency_ms": np.nan,
            "accuracy": float(np.median(window)), "rank": int(np.median(ranks)), "in_budget": len(budget),
            "regret": float(budget.max() - np.median(window)), "top1_by_score": "", "top1_regret": np.nan}


def plot(rows: pd.DataFrame, latency: pd.Series, T: float, path: Path) -> None:
    nets = distinct()
    lat = latency.reindex(nets.index)
    shown_nets = lat <= 1.15 * T
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.scatter(lat[shown_nets], nets["mean_acc"][shown_nets], s=4, c="lightgray", label="NAS-Bench-Macro networks")
    ax.axvspan(WINDOW[0] * T, WINDOW[1] * T, color="tab:green", alpha=0.08, label="search window")
    ax.axvline(T, color="k", lw=0.8)
    for _, row in rows[rows["network"] != ""].iterrows():
        ax.scatter(row["latency_ms"], row["accuracy"], s=40, marker="*",
                   label=f"{row['method']}: {row['network']} (regret {row['regret']:.2f})")
    ax.set(xlabel="local_cpu latency (table, ms)", ylabel="benchmark accuracy (mean of 3 trainings, %)",
           title=f"Networks found at T = {T:.3f} ms",
           ylim=(np.percentile(nets["mean_acc"][shown_nets], 5), nets["mean_acc"][shown_nets].max() + 0.1))
    ax.legend(fontsize=7, loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="supernet,random,zc", help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--supernet", type=Path, help="a `nas supernet train --space nasbench_macro` directory")
    ap.add_argument("--supernet-epoch", type=int, metavar="N",
                    help="score with the supernet's weights of epoch N (one it keeps; default its last): rows "
                         "METHOD-epochN, the training hours up to N")
    ap.add_argument("--data", default="cifar10:../shared/data", help="data of the zc and train methods")
    ap.add_argument("--zc", default="naswot", help="zero-cost score of the zc and vote methods")
    ap.add_argument("--candidates", type=int, default=300,
                    help="scored candidates per search (not train); the window holds 605 networks")
    ap.add_argument("--predictor-candidates", type=int, default=200,
                    help="random in-window networks scored by the supernet to fit the predictor method's predictor")
    ap.add_argument("--train-candidates", type=int, default=40)
    ap.add_argument("--train-epochs", type=float, default=1)
    ap.add_argument("--train-subset", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


def run(args: argparse.Namespace) -> None:
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(METHODS)
    if unknown or not args.methods:
        raise UserError(f"--methods {','.join(sorted(unknown)) or '(none)'}: expected some of {', '.join(METHODS)}")
    if {"supernet", "random", "predictor", "vote"} & set(args.methods) and not (args.supernet and (args.supernet / "epochs.csv").exists()):
        raise UserError(f"--supernet {args.supernet}: not a trained supernet directory (no epochs.csv)")
    if args.supernet_epoch is not None and args.supernet_epoch not in SupernetDir(args.supernet).saved_epochs():
        raise UserError(f"--supernet-epoch {args.supernet_epoch}: {shown(args.supernet)} keeps the weights of epochs "
                        f"{', '.join(map(str, SupernetDir(args.supernet).saved_epochs()))}")
    latency = table_latency()
    T = float(latency.reindex(distinct().index).median())
    rows = []
    for method in methods(args):
        run_dir, seconds = run_search(method, T, args.seed, cache_dir())
        rows.append(judged(method, run_dir, seconds, latency, T, args.data))
    rows.append(random_pick_row(latency, T))
    report(pd.DataFrame(rows), args, latency, T)


def report(table: pd.DataFrame, args: argparse.Namespace, latency: pd.Series, T: float) -> None:
    """Rows of earlier runs of other methods are kept: each method can be run (and resumed) alone."""
    out = args.out
    previous = pd.read_csv(out / "pipeline_cpu.csv", dtype={"network": str, "top1_by_score": str}) \
        if (out / "pipeline_cpu.csv").exists() else pd.DataFrame(columns=table.columns)
    table = pd.concat([previous[~previous["method"].isin(table["method"])], table], ignore_index=True)
    table["network"], table["top1_by_score"] = table["network"].fillna(""), table["top1_by_score"].fillna("")
    write_csv(out / "pipeline_cpu.csv", table)
    best = in_budget(latency, T)
    write_text(out / "pipeline_cpu.md", "\n".join([
        "# The pipeline on a CPU, judged by NAS-Bench-Macro", "",
        (f"T = {T:.3f} ms (median local_cpu table latency of the 3,969 networks); window [{WINDOW[0]} T, "
         f"{WINDOW[1]} T]; {len(best):,} networks within budget, the best {best.idxmax()} at {best.max():.2f}%. "
         f"The network found is the best by benchmark accuracy of each search's top {TOP} by its own score; "
         "`top1_*`: the search's single best by score. `candidates`: scored by the method's evaluator; `ranked`: "
         "distinct networks ranked (the predictor method ranks the whole window). Hours: wall-clock on the machine that ran it, the "
         "supernet's training included."), "",
        markdown_table(table, ".3g"), "",
        ("Reproduce: `python experiments/pipeline_cpu.py --supernet DIR --data cifar10:../shared/data "
         f"--methods {','.join(args.methods)} --candidates {args.candidates} --seed {args.seed}"
         + (f" --supernet-epoch {args.supernet_epoch}" if args.supernet_epoch else "") + "`"), ""]))
    plot(table, latency, T, out / "pipeline_cpu.png")
    print(markdown_table(table, ".3g"))


if __name__ == "__main__":
    sys.exit(main())
