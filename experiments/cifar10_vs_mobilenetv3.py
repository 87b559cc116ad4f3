"""The headline experiment (issue 13): search + NetAdapt against MobileNetV3 on CIFAR-10, at equal latency.

1. `nas search` for `pixel_cpu` with T = MobileNetV3-Large's latency, inside the latency window, scored by
   `--evaluator` (default: training with the best proxy setting of experiments/results/proxy_fidelity.csv;
   `supernet:DIR` for a trained supernet); validation is carved from the training images.
2. `nas train` retrains the top candidates; the winner is picked here on *validation* accuracy (`nas train`'s
   own winner.json ranks by test accuracy, which this experiment must not look at before step 4).
3. `netadapt refine` trims the winner to T if it is above it, and to 0.75 T.
4. The searched networks and the references (MobileNetV3-Large x0.5/0.75/1.0/1.25, MobileNetV3-Small,
   MobileNetV2, MnasNet-A1, ProxylessNAS-mobile) are trained from scratch with one fixed recipe
   (default: ../shared/gt/README.md's 18 epochs, batch 512, one-cycle lr 0.4, weight decay 5e-4, label
   smoothing 0.1) over several seeds and tested on the test split, untouched until here.
5. CSV + Markdown (pixel_cpu ms, the second target's ms, onnxruntime ms measured here end to end, MACs,
   params, test accuracy mean and spread over seeds, hours) and a plot of test accuracy against pixel_cpu
   latency with MobileNetV3-Large's width curve.
6. The same search for a second target (default `local_cpu`: this machine) and a 2x2 table, each winner's
   latency on each target.

Resumable: every stage writes its outputs atomically under --work and a marker when done; a rerun skips
finished stages (the commands it calls resume their own half-done work), and final training skips every
(network, seed) already recorded.

    python experiments/cifar10_vs_mobilenetv3.py --quick      # tiny settings on digits: the code path, on a CPU

--quick's second target is the pixel_cpu table file (a second search's code path without the minutes a
local_cpu table costs to measure), so its 2x2 table shows equal columns; its numbers are not results.

The experiment itself (not yet measured; one GPU, ../shared/data holding cifar10_{train,test}.npz;
`nas latency build --space mnv3 --device local_cpu` first fills the local_cpu table in a few minutes):

    python experiments/cifar10_vs_mobilenetv3.py --data cifar10:../shared/data --device cuda \\
        --workers 4 --gpus-per-trial 0.25
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as nas.cli: idle OpenMP threads must not spin

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from latency_tables import load_target  # noqa: E402
from latency_tables.measure import Budget  # noqa: E402
from latency_tables.pixel import TABLE_FILE as PIXEL_TABLE_FILE  # noqa: E402
from nas.cli import main as nas  # noqa: E402
from nas.data import absolute_spec, data_sizes, load_data  # noqa: E402
from nas.device import add_device_argument, resolve_device  # noqa: E402
from nas.run_dir import RunDir, write_csv, write_json, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from nas.training import TrainConfig, build_for_training, evaluate, train  # noqa: E402
from netadapt.cli import main as netadapt  # noqa: E402
from onnx_latency import THOROUGH, measure_end_to_end  # noqa: E402
from proxy_fidelity import SETTINGS as PROXY_SETTINGS  # noqa: E402
from results_paths import shown  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.counting import count  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.ir import Arch  # noqa: E402
from search_spaces.references import reference  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED_DATA = HERE.parents[1] / "shared" / "data"
MNV3_WIDTHS = (0.5, 0.75, 1.0, 1.25)
REFERENCES = [(f"mobilenet_v3_large_x{w:g}", "mobilenet_v3_large", w) for w in MNV3_WIDTHS] + [
    (name, name, 1.0) for name in ("mobilenet_v3_small", "mobilenet_v2", "mnasnet_a1", "proxylessnas_mobile")]
SEARCHED = ("searched_pixel_cpu", "netadapt_T", "netadapt_tight", "searched_second")
TIGHT = 0.75  # the second, tighter budget, as a fraction of T (MobileNetV3 used NetAdapt to reach it)


@dataclass(frozen=True)
class Plan:
    """Every setting that decides the experiment's numbers (written to the work dir; a resumed run keeps it)."""

    data: str
    second_target: str
    evaluator: str
    proxy: str                   # the proxy setting's name (experiments/proxy_fidelity.py), or "quick"
    train_subset: int | None     # proxy training images (search, retraining, NetAdapt)
    resolution: int              # proxy resolution
    search_epochs: float
    search_steps: int | None
    batch_size: int
    lr: float
    trials: int
    controller: str
    top: int                     # candidates retrained by `nas train`
    retrain_epochs: float
    step_ratio: float            # NetAdapt
    short_term_steps: int
    long_term_epochs: float
    final: TrainConfig           # the fixed recipe (device and seed are set per run)
    final_resolution: int
    final_subset: int | None
    seeds: int
    measure: Budget


def best_proxy(results: Path = HERE / "results" / "proxy_fidelity.csv") -> str:
    """The measured proxy setting with the highest Kendall tau (validation accuracy as the score)."""
    table = pd.read_csv(results)
    table = table[table["score"] == "val_acc"] if "score" in table else table
    return str(table.loc[table["kendall_tau"].idxmax(), "setting"])


def make_plan(a) -> Plan:
    if a.quick:
        data = absolute_spec(a.data or "digits")
        small = data == "digits"
        # a few hundred (digits) or thousand (CIFAR-10) training images also bound every BN recalibration;
        # NetAdapt's step of 0.2 T reaches T in one iteration when the winner is within the window
        subset = 256 if small else 2000
        return Plan(data=data, second_target=a.second_target or str(PIXEL_TABLE_FILE), evaluator=a.evaluator,
                    proxy="quick", train_subset=subset, resolution=8 if small else 16,
                    search_epochs=1, search_steps=2, batch_size=32, lr=0.05, trials=a.trials or 2,
                    controller="random", top=1, retrain_epochs=0.2, step_ratio=0.2, short_term_steps=1,
                    long_term_epochs=0.05,
                    final=TrainConfig(steps=2 if small else 20, batch_size=32 if small else 64, lr=0.05,
                                      schedule="onecycle", weight_decay=5e-4, recalibrate_images=64,
                                      flip=not small),  # a mirrored digit is another symbol
                    final_resolution=8 if small else 16, final_subset=subset,
                    seeds=a.seeds or 2, measure=Budget(warmup=1, min_rounds=3, max_rounds=5, max_seconds=0.3))
    proxy = a.proxy or best_proxy()
    p = PROXY_SETTINGS[proxy]
    data = absolute_spec(a.data or f"cifar10:{SHARED_DATA}")
    return Plan(data=data, second_target=a.second_target or "local_cpu",
                evaluator=a.evaluator, proxy=proxy, train_subset=p.train_images, resolution=p.resolution,
                search_epochs=p.epochs, search_steps=None, batch_size=p.batch_size, lr=p.lr,
                trials=a.trials or 100, controller="rl", top=5, retrain_epochs=10 * p.epochs, step_ratio=0.02,
                short_term_steps=20, long_term_epochs=2,
                # ../shared/gt/README.md's recipe, which gave MobileNetV3-Large 0.8813
                final=TrainConfig(epochs=18, batch_size=512, lr=0.4, schedule="onecycle", weight_decay=5e-4,
                                  label_smoothing=0.1, flip=not data.startswith("digits")),
                final_resolution=32, final_subset=None, seeds=a.seeds or 3, measure=THOROUGH)


class Stages:
    """Runs each stage once: a stage's marker (stages/<name>.json, written last) says it is done."""

    def __init__(self, work: Path):
        self.dir = work / "stages"

    def run(self, name: str, fn) -> dict:
        marker = self.dir / f"{name}.json"
        if marker.exists():
            print(f"[{name}] done before, skipped", flush=True)
            return json.loads(marker.read_text())
        print(f"[{name}] running", flush=True)
        start = time.perf_counter()
        result = fn() | {"seconds": time.perf_counter() - start}
        write_json(marker, result)
        print(f"[{name}] finished in {result['seconds']:.0f} s", flush=True)
        return result


def call(cli, argv: list[str], ok=(0,)) -> int:
    code = cli(argv)
    if code not in ok:
        raise SystemExit(f"`{' '.join(map(str, argv))}` exited with status {code}")
    return code


def search(plan: Plan, target: str, run: Path, a) -> dict:
    if (run / "config.json").exists():  # a search killed earlier: nas search continues it
        call(nas, ["search", "--resume", str(run), "--quiet"])
    else:
        args = ["search", "--space", "mnv3", "--target", target, "--data", plan.data, "--out", str(run),
                "--evaluator", plan.evaluator, "--controller", plan.controller, "--trials", str(plan.trials),
                "--resolution", str(plan.resolution), "--epochs", str(plan.search_epochs),
                "--batch-size", str(plan.batch_size), "--lr", str(plan.lr), "--workers", str(a.workers),
                "--device", a.device, "--seed", "0", "--quiet"]
        args += ["--train-subset", str(plan.train_subset)] if plan.train_subset else []
        args += ["--steps", str(plan.search_steps)] if plan.search_steps else []
        args += ["--gpus-per-trial", str(a.gpus_per_trial)] if a.gpus_per_trial is not None else []
        call(nas, args)
    config = RunDir(run).config()
    return {"run": str(run), "latency_target_ms": config.latency_target_ms, "target": config.target}


def retrain_and_pick(plan: Plan, run: Path, selected: Path, a) -> dict:
    """`nas train` the top candidates; the one with the best validation accuracy becomes `selected`, a run
    directory (the search's config.json, the pick in best/) that NetAdapt starts from."""
    call(nas, ["train", str(run), "--top", str(plan.top), "--epochs", str(plan.retrain_epochs),
               "--device", a.device, "--quiet"])
    results = pd.read_csv(run / "final" / "results.csv").sort_values(["val_accuracy", "rank"],
                                                                      ascending=[False, True])
    pick = results.iloc[0]
    for name in ("arch.json", "model.pt", "model.onnx"):
        with atomic_path(selected / "best" / name) as tmp:
            shutil.copyfile(run / pick["dir"] / name, tmp)
    with atomic_path(selected / "config.json") as tmp:
        shutil.copyfile(run / "config.json", tmp)
    return {"rank": int(pick["rank"]), "trial": int(pick["trial"]), "val_accuracy": float(pick["val_accuracy"]),
            "latency_ms": float(pick["latency_ms"]), "arch": pick["arch"], "dir": str(selected)}


def refine(plan: Plan, selected: Path, budget_ms: float, out: Path, a) -> dict:
    code = call(netadapt, ["refine", str(selected), "--target", "pixel_cpu", "--target-latency", f"{budget_ms:.6f}",
                           "--step-ratio", str(plan.step_ratio), "--short-term-steps", str(plan.short_term_steps),
                           "--long-term-epochs", str(plan.long_term_epochs), "--device", a.device,
                           "--no-progress", "--out", str(out)], ok=(0, 1))
    result = json.loads((out / "result.json").read_text())
    return {"budget_ms": budget_ms, "within_budget": code == 0, "latency_ms": result["final_ms"],
            "arch_json": str(out / "arch.json")}


def networks(searched: dict[str, Path], num_classes: int) -> dict[str, Arch]:
    """Every network of the table, as deployed (224x224, the data's classes)."""
    nets = {name: reference(ref, w).replace(num_classes=num_classes, resolution=224) for name, ref, w in REFERENCES}
    return nets | {name: Arch.from_json(path.read_text()) for name, path in searched.items()}


def train_finals(plan: Plan, nets: dict[str, Arch], runs_csv: Path, device: str, threads: int | None) -> pd.DataFrame:
    """Each (network, seed) trained from scratch with the fixed recipe; each result appended atomically."""
    runs = pd.read_csv(runs_csv) if runs_csv.exists() else pd.DataFrame(columns=["network", "seed"])
    done = set(zip(runs["network"], runs["seed"]))
    todo = [(n, s) for s in range(plan.seeds) for n in nets if (n, s) not in done]
    if not todo:
        return runs
    data = load_data(plan.data, resolution=plan.final_resolution, train_subset=plan.final_subset, seed=0).to(device)
    for name, seed in todo:
        cfg = replace(plan.final, seed=seed, device=device, threads=threads)
        model = build_for_training(nets[name], data, seed=seed)
        result = train(model, data, cfg)
        row = {"network": name, "seed": seed, "val_acc": result["val_acc"], "test_acc": evaluate(model, data.test),
               "train_seconds": result["seconds"], "device": device}
        print(f"  {name} seed {seed}: test acc {row['test_acc']:.4f} ({row['train_seconds']:.0f} s)", flush=True)
        runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
        write_csv(runs_csv, runs)
    return runs


def latencies(plan: Plan, nets: dict[str, Arch], threads: int) -> pd.DataFrame:
    pixel, second = load_target("pixel_cpu"), load_target(plan.second_target)
    measured = measure_end_to_end(list(nets.values()), threads, plan.measure)
    rows = []
    for (name, arch), m in zip(nets.items(), measured):
        c = count(arch)
        rows.append({"network": name, "pixel_cpu_ms": pixel.query_total(arch), "second_target_ms": second.query_total(arch),
                     "local_cpu_measured_ms": m["median_ms"], "local_cpu_p10_ms": m["p10_ms"],
                     "local_cpu_p90_ms": m["p90_ms"], "macs_m": c["macs"] / 1e6, "params_m": c["params"] / 1e6,
                     "arch": arch.to_string()})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, t_ms: float, path: Path, title: str) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    curve = table[table["network"].str.startswith("mobilenet_v3_large_x")].sort_values("pixel_cpu_ms")
    ax.errorbar(curve["pixel_cpu_ms"], curve["test_acc_mean"], yerr=curve["test_acc_std"], fmt="o-", color="C0",
                capsize=3, label="MobileNetV3-Large x0.5 / 0.75 / 1.0 / 1.25")
    for row in table.itertuples():
        if row.network.startswith("mobilenet_v3_large_x"):
            continue
        searched = row.kind == "searched"
        ax.errorbar(row.pixel_cpu_ms, row.test_acc_mean, yerr=row.test_acc_std, fmt="*" if searched else "s",
                    ms=11 if searched else 6, color="C3" if searched else "0.4", capsize=3)
        ax.annotate(row.network, (row.pixel_cpu_ms, row.test_acc_mean), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.axvline(t_ms, color="k", ls=":", lw=1, label=f"T = {t_ms:.1f} ms")
    ax.axvline(TIGHT * t_ms, color="k", ls="--", lw=0.8, label=f"{TIGHT:g} T")
    ax.set(xlabel="pixel_cpu latency, ms (224x224, table)", ylabel="test accuracy (mean ± std over seeds)",
           title=title)
    ax.legend(fontsize=8, loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def report(plan: Plan, work: Path, results: Path, name: str, hours: str, done: dict, quick: bool) -> None:
    finals = pd.read_csv(work / "final_runs.csv")
    lat = pd.read_csv(work / "latency.csv")
    acc = finals.groupby("network", sort=False)["test_acc"].agg(["mean", "std", "count"]).reset_index()
    acc.columns = ["network", "test_acc_mean", "test_acc_std", "seeds"]
    train_h = finals.groupby("network")["train_seconds"].sum() / 3600
    table = lat.merge(acc, on="network")
    table.insert(1, "kind", ["searched" if n in SEARCHED else "reference" for n in table["network"]])
    table[f"train_{hours}"] = table["network"].map(train_h)
    pipeline = done["search_pixel_cpu"]["seconds"] + done["retrain_pixel_cpu"]["seconds"]
    search_s = {"searched_pixel_cpu": pipeline, "netadapt_T": pipeline + done["netadapt_T"]["seconds"],
                "netadapt_tight": pipeline + done["netadapt_tight"]["seconds"],
                "searched_second": done["search_second"]["seconds"] + done["retrain_second"]["seconds"]}
    table[f"search_{hours}"] = table["network"].map(search_s) / 3600
    write_csv(results / f"{name}.csv", table)

    t_ms = done["search_pixel_cpu"]["latency_target_ms"]
    label = "QUICK: tiny settings, not the experiment's figures. " if quick else ""
    data = {"cifar10": "CIFAR-10", "digits": "digits (quick stand-in for CIFAR-10)"}.get(
        plan.data.partition(":")[0], plan.data)
    plot(table, t_ms, results / f"{name}.png", f"{label}\n{data}: test accuracy vs pixel_cpu latency")
    second = shown(done["search_second"]["target"])  # results name paths relative to the repository
    pixel, other = load_target("pixel_cpu"), load_target(plan.second_target)
    winners = {"searched_pixel_cpu": done["retrain_pixel_cpu"], "searched_second": done["retrain_second"]}
    two = pd.DataFrame([{"winner": w, "searched_for": "pixel_cpu" if w == "searched_pixel_cpu" else second,
                         "pixel_cpu_ms": pixel.query_total(Arch.from_string(d["arch"])),
                         "second_target_ms": other.query_total(Arch.from_string(d["arch"]))}
                        for w, d in winners.items()])
    write_csv(results / f"{name}_2x2.csv", two)
    pipeline_h = (pipeline + done["netadapt_T"]["seconds"] + done["netadapt_tight"]["seconds"]) / 3600
    cols = ["network", "kind", "pixel_cpu_ms", "second_target_ms", "local_cpu_measured_ms", "macs_m", "params_m",
            "test_acc_mean", "test_acc_std", "seeds", f"search_{hours}", f"train_{hours}"]
    shown_plan = asdict(plan) | {"data": shown(plan.data), "second_target": shown(plan.second_target)}
    md = [f"# {label}Search + NetAdapt vs MobileNetV3 on {data} at equal latency", "",
          f"- Plan: `{json.dumps(shown_plan, default=str)}`",
          f"- T = {t_ms:.2f} ms (MobileNetV3-Large on pixel_cpu, 224x224); the second target is `{second}` "
          f"(`second_target_ms`: its table); `local_cpu_measured_ms`: each network at 224x224 end to end with "
          f"onnxruntime on this machine, 1 thread, all networks in the same interleaved rounds (median).",
          f"- Search, retraining and NetAdapt for pixel_cpu took {pipeline_h:.3f} {hours} (wall time of the "
          f"invocations that completed each stage); `search_{hours}` of a searched network is its pipeline up to "
          f"it, `train_{hours}` its fixed-recipe trainings summed over seeds.",
          "- Winner picked on validation accuracy among the retrained candidates; the test split is used only "
          "in the final training's evaluation.", "",
          markdown_table(table[cols]), "",
          "## Each winner on each target (table latency, ms)", "", markdown_table(two), "",
          "## NetAdapt", ""]
    md += [f"- {k}: budget {v['budget_ms']:.2f} ms, reached {v['latency_ms']:.2f} ms "
           f"({'within' if v['within_budget'] else 'NOT within'} budget)" if "budget_ms" in v else f"- {k}: {v['note']}"
           for k, v in done.items() if k.startswith("netadapt")]
    write_text(results / f"{name}.md", "\n".join(md) + "\n")
    print("\n".join(md), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the same pipeline with tiny settings (minutes on a CPU)")
    p.add_argument("--data", help="cifar10:DIR (default ../shared/data; --quick: digits, or a CIFAR-10 subset at 16x16 "
                                   "with cifar10:DIR, whose 10,000 test images take minutes per network on a CPU)")
    p.add_argument("--evaluator", default="train", help="train (the best proxy) or supernet:DIR")
    p.add_argument("--proxy", choices=sorted(PROXY_SETTINGS), help="proxy setting (default: the best measured)")
    p.add_argument("--second-target", help="the second search's target (default local_cpu; --quick: the "
                                           "pixel_cpu table file, as local_cpu needs its table built first)")
    p.add_argument("--trials", type=int, help="candidates per search (default 100; --quick 2)")
    p.add_argument("--seeds", type=int, help="fixed-recipe trainings per network (default 3; --quick 2)")
    p.add_argument("--workers", type=int, default=1, help="trials at once (nas search --workers)")
    p.add_argument("--gpus-per-trial", type=float, help="nas search --gpus-per-trial")
    p.add_argument("--threads", type=int, default=1, help="torch threads for final training; onnxruntime threads")
    add_device_argument(p)
    p.add_argument("--work", type=Path, help="work directory (default experiments/runs/cifar10_vs_mobilenetv3[_quick])")
    p.add_argument("--results", type=Path, default=HERE / "results", help="where the CSV, Markdown and plot go")
    a = p.parse_args(argv)
    name = "cifar10_vs_mobilenetv3" + ("_quick" if a.quick else "")
    work = (a.work or HERE / "runs" / name).resolve()
    for flag, value in (("--trials", a.trials), ("--seeds", a.seeds), ("--workers", a.workers),
                        ("--threads", a.threads)):
        if value is not None and value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    try:
        device = str(resolve_device(a.device))
        plan = make_plan(a)
        data_sizes(plan.data)  # data it cannot read is one line, before anything runs
    except UserError as e:
        p.error(str(e))
    hours = "gpu_hours" if device.startswith("cuda") else "cpu_hours"

    plan_file = work / "plan.json"
    if plan_file.exists() and json.loads(plan_file.read_text()) != json.loads(json.dumps(asdict(plan), default=str)):
        raise SystemExit(f"{work} holds a run with other settings ({plan_file}); use another --work")
    write_json(plan_file, asdict(plan))
    stages, done = Stages(work), {}
    done["search_pixel_cpu"] = stages.run("search_pixel_cpu", lambda: search(plan, "pixel_cpu", work / "search_pixel_cpu", a))
    done["retrain_pixel_cpu"] = stages.run("retrain_pixel_cpu", lambda: retrain_and_pick(
        plan, work / "search_pixel_cpu", work / "selected_pixel_cpu", a))
    t_ms, winner_ms = done["search_pixel_cpu"]["latency_target_ms"], done["retrain_pixel_cpu"]["latency_ms"]
    selected = work / "selected_pixel_cpu"
    searched = {"searched_pixel_cpu": selected / "best" / "arch.json"}
    if winner_ms > t_ms:
        done["netadapt_T"] = stages.run("netadapt_T", lambda: refine(plan, selected, t_ms, work / "netadapt_T", a))
        searched["netadapt_T"] = Path(done["netadapt_T"]["arch_json"])
    else:
        done["netadapt_T"] = {"note": f"not needed: the winner ({winner_ms:.2f} ms) is within T", "seconds": 0.0}
    done["netadapt_tight"] = stages.run("netadapt_tight", lambda: refine(
        plan, selected, TIGHT * t_ms, work / "netadapt_tight", a))
    searched["netadapt_tight"] = Path(done["netadapt_tight"]["arch_json"])
    done["search_second"] = stages.run("search_second", lambda: search(plan, plan.second_target,
                                                                       work / "search_second", a))
    done["retrain_second"] = stages.run("retrain_second", lambda: retrain_and_pick(
        plan, work / "search_second", work / "selected_second", a))
    searched["searched_second"] = work / "selected_second" / "best" / "arch.json"

    nets = networks(searched, RunDir(work / "search_pixel_cpu").config().num_classes)
    stages.run("final_training", lambda: {"runs": len(train_finals(plan, nets, work / "final_runs.csv", device,
                                                                   a.threads))})
    stages.run("latency", lambda: write_csv(work / "latency.csv", latencies(plan, nets, a.threads)) or {})
    a.results.mkdir(parents=True, exist_ok=True)
    report(plan, work, a.results, name, hours, done, a.quick)


if __name__ == "__main__":
    main()
