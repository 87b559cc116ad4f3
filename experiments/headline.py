"""The headline (issue 33): `nas search` + `netadapt refine` against MobileNetV3 at equal latency, on
CIFAR-10, on a CPU, every accuracy from one training recipe (`cifar10_18ep`, nas/recipes.py).

Stages (each runs once: WORK/stages/<name>.json marks it done; the long ones resume mid-way):
1. `search_T`, `search_tight`: `nas search --space mnv3 --target pixel_cpu` at T (MobileNetV3-Large's
   pixel_cpu latency) and at 0.75 T, scored by --evaluator (default NASWOT at 16 px), no final training.
2. The top --finalists of each search by its own score are trained from scratch with the recipe
   (`train_<name>`: checkpointed every two minutes in the user cache, where `nas arch train` of the same
   network finds it too; a killed training resumes), the T winner first.
3. `netadapt`: `netadapt refine` of the T winner, from its recipe-trained weights, down to 0.75 T;
   its result trained from scratch with the recipe.
4. `latency`: every network and reference at 224x224 with 1,000 classes (as the shared ground truth
   counts them): pixel_cpu ms, and this machine's ms end to end in onnxruntime (1 thread, all
   networks in the same interleaved rounds).
5. The report (written after every stage, so a partial run shows what is done): CSV, Markdown and
   a plot of test accuracy against latency with MobileNetV3-Large's width curve; for each network
   its distance in points from that curve interpolated at its own latency (pixel_cpu and measured).

References' accuracies are the shared ground truth's (../shared/gt/cifar10_18ep.csv: the same recipe,
trained once on a GPU); --train-references also trains references here with the recipe (by default
MobileNetV3-Large x0.75: the check that the recipe reproduces the ground truth on this CPU).
--quick: digits, tiny settings, its own files, every figure labelled QUICK (the code path only).

    python experiments/headline.py --data cifar10:../shared/data     # hours: rerun the same command to resume
    python experiments/headline.py --quick
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as nas.cli: idle OpenMP threads must not spin

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from latency_tables import load_target  # noqa: E402
from latency_tables.measure import Budget  # noqa: E402
from nas.cli import main as nas  # noqa: E402
from nas.data import absolute_spec, data_sizes  # noqa: E402
from nas.final_training import top_candidates  # noqa: E402
from nas.recipes import default_out, get_recipe, train_with_recipe  # noqa: E402
from nas.run_dir import RunDir, write_csv, write_json, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from netadapt.cli import main as netadapt  # noqa: E402
from onnx_latency import THOROUGH, measure_end_to_end  # noqa: E402
from results_paths import experiment_state, shown  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.counting import count  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.ir import Arch  # noqa: E402
from search_spaces.references import reference  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
CURVE = "mobilenet_v3_large"
WIDTHS = (0.5, 0.75, 1.0, 1.25)
#: the shared ground truth's names of MobileNetV3-Large at each width
GT_NAMES = {0.5: "mnv3_large_x0.5", 0.75: "mnv3_large_x0.75", 1.0: "mobilenet_v3_large", 1.25: "mnv3_large_x1.25"}
TIGHT = 0.75  # the second budget, as a share of T (MobileNetV3 reached it with NetAdapt)
WINDOW = "0.85,1.0"  # the searches' window, in shares of their budget: no candidate over it


@dataclass(frozen=True)
class Plan:
    """Every setting that decides the numbers (WORK/plan.json; a resumed run must keep it)."""

    data: str
    evaluator: str
    trials: int
    finalists: int
    epochs: float | None          # None: the recipe's 18; else shortened (--quick), and labelled so
    batch_size: int | None        # None: the recipe's 512 (--quick: smaller)
    search_args: tuple[str, ...]  # extra `nas search` settings (--quick's tiny proxy)
    netadapt_args: tuple[str, ...]
    train_references: tuple[str, ...]  # references trained here with the recipe
    gt: str | None                # the shared ground truth's CSV (None: every reference trained here)
    measure: Budget


def make_plan(a) -> Plan:
    if a.quick:
        return Plan(data=absolute_spec(a.data or "digits"), evaluator=a.evaluator, trials=a.trials or 6,
                    finalists=a.finalists or 1, epochs=0.05, batch_size=32,
                    search_args=("--train-subset", "256", "--resolution", "8"),
                    netadapt_args=("--step-ratio", "0.1", "--short-term-steps", "1", "--long-term-epochs", "0.05"),
                    train_references=(f"{CURVE}_x0.5", f"{CURVE}_x1"), gt=None,  # the curve's two ends
                    measure=Budget(warmup=1, min_rounds=3, max_rounds=5, max_seconds=0.3))
    return Plan(data=absolute_spec(a.data or f"cifar10:{SHARED / 'data'}"), evaluator=a.evaluator,
                trials=a.trials or 200, finalists=a.finalists or 2, epochs=None, batch_size=None, search_args=(),
                netadapt_args=("--step-ratio", "0.05", "--short-term-steps", "20", "--long-term-epochs", "1"),
                train_references=tuple(a.train_references.split(",")) if a.train_references else (),
                gt=str(a.gt), measure=THOROUGH)


class Stages:
    """Runs each stage once: a stage's marker (stages/<name>.json, written last) says it is done."""

    def __init__(self, work: Path):
        self.dir = work / "stages"

    def done(self) -> dict[str, dict]:
        return {f.stem: json.loads(f.read_text()) for f in sorted(self.dir.glob("*.json"))}

    def run(self, name: str, fn) -> dict:
        marker = self.dir / f"{name}.json"
        if marker.exists():
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
        raise UserError(f"`{' '.join(map(str, argv))}` exited with status {code}")
    return code


def search(plan: Plan, run: Path, target_ms: float | None) -> dict:
    if (run / "config.json").exists():  # killed before: nas search continues it
        call(nas, ["search", "--resume", str(run), "--quiet"])
    else:
        budget = ["--latency-target", f"{target_ms:.6f}"] if target_ms else []
        call(nas, ["search", "--space", "mnv3", "--target", "pixel_cpu", "--data", plan.data, "--out", str(run),
                   "--evaluator", plan.evaluator, "--trials", str(plan.trials), "--final-top", "0", "--seed", "0",
                   "--latency-window", WINDOW,
                   "--device", "cpu", "--quiet", *budget, *plan.search_args])
    cfg = RunDir(run).config()
    top = top_candidates(RunDir(run).trials(), plan.finalists)
    return {"latency_target_ms": cfg.latency_target_ms, "num_classes": cfg.num_classes,
            "finalists": [{"trial": int(r.trial), "arch": r.arch, "score": float(r.accuracy),
                           "latency_ms": float(r.latency_ms)} for r in top.itertuples()]}


def recipe_train(plan: Plan, work: Path, name: str, arch: Arch, threads: int) -> dict:
    recipe = get_recipe("cifar10_18ep")
    # in the user cache by network: `nas arch train` of the same network, data and seed shares it
    out = default_out(arch, recipe, plan.data, epochs=plan.epochs, batch_size=plan.batch_size)
    print(f"  {name}: state in {out}", flush=True)
    r = train_with_recipe(arch, recipe, plan.data, out, epochs=plan.epochs, batch_size=plan.batch_size,
                          threads=threads, progress=True)
    print(f"  {name}: test accuracy {r['test_acc']:.4f} ({r['train_seconds'] / 3600:.2f} h)", flush=True)
    return {"test_acc": r["test_acc"], "train_hours": r["train_seconds"] / 3600, "images_per_s": r["images_per_s"]}


def netadapt_from_trained(plan: Plan, work: Path, search_run: Path, trained: Path, budget_ms: float) -> dict:
    """NetAdapt starts from a run directory's best/: the T search's config with the recipe-trained winner."""
    start = work / "netadapt_start"
    for name in ("arch.json", "model.pt"):
        with atomic_path(start / "best" / name) as tmp:
            tmp.write_bytes((trained / name).read_bytes())
    with atomic_path(start / "config.json") as tmp:
        tmp.write_bytes((search_run / "config.json").read_bytes())
    out = work / "netadapt"
    code = call(netadapt, ["refine", str(start), "--target-latency", f"{budget_ms:.6f}", "--device", "cpu",
                           "--no-progress", "--out", str(out), *plan.netadapt_args], ok=(0, 1))
    result = json.loads((out / "result.json").read_text())
    return {"budget_ms": budget_ms, "within_budget": code == 0, "latency_ms": result["final_ms"],
            "arch": Arch.from_json((out / "arch.json").read_text()).to_string()}


def as_gt(arch: Arch | str) -> Arch:
    """The network as the shared ground truth counts it: 224x224, 1,000 classes."""
    arch = Arch.from_string(arch) if isinstance(arch, str) else arch
    return arch.replace(num_classes=1000, resolution=224)


def curve_distance(points: pd.DataFrame, x: str, at: pd.Series, acc: pd.Series) -> pd.Series:
    """Points above MobileNetV3-Large's width curve (accuracy against `x`) interpolated at `at`
    (piecewise linear; beyond the curve's ends, extended along its end segments)."""
    c = points.sort_values(x)
    xs, ys = c[x].to_numpy(float), c["test_acc"].to_numpy(float)
    if len(xs) < 2 or np.isnan(xs).any() or np.isnan(ys).any():
        return pd.Series(np.nan, index=at.index)

    def interp(v):
        if np.isnan(v):
            return np.nan
        i = int(np.clip(np.searchsorted(xs, v) - 1, 0, len(xs) - 2))
        return ys[i] + (ys[i + 1] - ys[i]) * (v - xs[i]) / (xs[i + 1] - xs[i])
    return (acc - at.map(interp)) * 100


def networks(plan: Plan, done: dict) -> pd.DataFrame:
    """Every network of the table: searched, NetAdapt, references (deployed as the ground truth counts)."""
    rows = []
    for budget in ("T", "tight"):
        for i, f in enumerate(done.get(f"search_{budget}", {}).get("finalists", []), start=1):
            rows.append({"network": f"{budget}_{i}", "kind": f"searched ({'T' if budget == 'T' else '0.75 T'})",
                         "arch": f["arch"], "score": f["score"]})
    if "netadapt" in done:
        rows.append({"network": "netadapt_0.75T", "kind": "NetAdapt of T_1 to 0.75 T", "arch": done["netadapt"]["arch"]})
    gt = pd.read_csv(plan.gt).set_index("name") if plan.gt else None
    for w in WIDTHS:
        name = f"{CURVE}_x{w:g}"
        rows.append({"network": name, "kind": "reference (curve)", "arch": reference(CURVE, w).to_string(),
                     "gt_test_acc": gt.loc[GT_NAMES[w], "test_acc_18ep"] if gt is not None else np.nan})
    table = pd.DataFrame(rows)
    table["arch"] = [as_gt(a).to_string() for a in table["arch"]]
    return table


def train_order(plan: Plan, table: pd.DataFrame) -> list[str]:
    """The references trained here first (the recipe's check: is this CPU's accuracy the ground
    truth's?), then T's winner (NetAdapt starts from it), each budget's best, NetAdapt, the rest."""
    names = list(table["network"])
    first = [n for n in ("T_1", "tight_1", "netadapt_0.75T") if n in names]
    rest = [n for n in names if n not in first and not n.startswith(CURVE)]
    return [n for n in plan.train_references if n in names] + first + rest


def report(plan: Plan, work: Path, results: Path, name: str, quick: bool) -> pd.DataFrame:
    stages = Stages(work).done()
    table = networks(plan, stages)
    trained = {k.removeprefix("train_"): v for k, v in stages.items() if k.startswith("train_")}
    table["test_acc_here"] = table["network"].map(lambda n: trained.get(n, {}).get("test_acc", np.nan))
    table["train_cpu_hours"] = table["network"].map(lambda n: trained.get(n, {}).get("train_hours", np.nan))
    # the table's accuracy: trained here when it was, else the shared ground truth's (same recipe, a GPU)
    gt_acc = table.get("gt_test_acc", pd.Series(np.nan, index=table.index))
    table["test_acc"] = table["test_acc_here"].where(table["test_acc_here"].notna(), gt_acc)
    table["test_acc_from"] = np.where(table["test_acc_here"].notna(), "trained here",
                                      np.where(gt_acc.notna(), "shared ground truth", "not yet trained"))
    lat = pd.read_csv(work / "latency.csv") if (work / "latency.csv").exists() else None
    pixel = load_target("pixel_cpu")
    table["pixel_cpu_ms"] = [pixel.query_total(Arch.from_string(a)) for a in table["arch"]]
    if lat is not None:
        table = table.merge(lat[["arch", "measured_ms"]], on="arch", how="left")
    else:
        table["measured_ms"] = np.nan
    sizes = [count(Arch.from_string(a)) for a in table["arch"]]
    table["params_m"] = [s["params"] / 1e6 for s in sizes]
    table["macs_m"] = [s["macs"] / 1e6 for s in sizes]
    # the curve: the ground truth's accuracies where there are (the reference figure), else those trained here
    curve = table[table["kind"] == "reference (curve)"].assign(
        test_acc=lambda t: t["gt_test_acc"].where(t["gt_test_acc"].notna(), t["test_acc_here"])).dropna(
        subset=["test_acc"])
    table["vs_curve_pixel_pts"] = curve_distance(curve, "pixel_cpu_ms", table["pixel_cpu_ms"], table["test_acc"])
    table["vs_curve_measured_pts"] = curve_distance(curve, "measured_ms", table["measured_ms"], table["test_acc"])
    cols = ["network", "kind", "pixel_cpu_ms", "measured_ms", "params_m", "macs_m", "test_acc", "test_acc_from",
            "vs_curve_pixel_pts", "vs_curve_measured_pts", "train_cpu_hours", "arch"]
    table = table[cols]
    write_csv(results / f"{name}.csv", table)
    label = "QUICK: tiny settings on digits, not the experiment's figures. " if quick else ""
    plot(table, curve, stages, results / f"{name}.png", label)
    hours = {k: v["seconds"] / 3600 for k, v in stages.items() if not k.startswith("train_")}
    hours |= {k: v["train_hours"] for k, v in stages.items() if k.startswith("train_")}
    t_ms = stages.get("search_T", {}).get("latency_target_ms")
    md = [f"# {label}Search + NetAdapt vs MobileNetV3-Large on {shown(plan.data)}, at equal latency", "",
          f"- Plan: `{json.dumps(asdict(plan) | {'data': shown(plan.data), 'gt': shown(plan.gt) if plan.gt else None}, default=str)}`",
          f"- Searches: `nas search --space mnv3 --target pixel_cpu --evaluator {plan.evaluator} --trials {plan.trials}` "
          f"at T = {t_ms:.2f} ms (the search's own deployment: 224 px, the data's classes)" if t_ms else "- Searches: not yet run",
          "- Latencies in the table are at 224x224 and 1,000 classes, as the shared ground truth counts them; "
          "`measured_ms`: onnxruntime on this machine, 1 thread, all networks in the same interleaved rounds (median).",
          "- `vs_curve_*_pts`: test accuracy minus MobileNetV3-Large's width curve (x0.5, 0.75, 1.0, 1.25; accuracies "
          "of the shared ground truth where it has them) interpolated at the network's own latency, in points.",
          f"- Accuracy: `{get_recipe('cifar10_18ep').name}` "
          + ("(the recipe)" if plan.epochs is None else
             f"shortened to {plan.epochs:g} epochs of batch {plan.batch_size} (not the recipe)")
          + ", top-1 on the test split, one seed.", "",
          markdown_table(table.drop(columns="arch")), "",
          "## Hours of each stage (this machine; trainings: their own training time, summed over sessions)", "",
          markdown_table(pd.DataFrame({"stage": list(hours), "cpu_hours": list(hours.values())})), "",
          f"Reproduce: `python experiments/headline.py{' --quick' if quick else ''} --data {shown(plan.data)}`"]
    if "netadapt" in stages:
        n = stages["netadapt"]
        md.insert(6, f"- NetAdapt: budget {n['budget_ms']:.2f} ms, reached {n['latency_ms']:.2f} ms "
                     f"({'within' if n['within_budget'] else 'NOT within'} budget)")
    write_text(results / f"{name}.md", "\n".join(md) + "\n")
    return table


def plot(table: pd.DataFrame, curve: pd.DataFrame, stages: dict, path: Path, label: str) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    c = curve.sort_values("pixel_cpu_ms")
    ax.plot(c["pixel_cpu_ms"], c["test_acc"], "o-", color="C0", label="MobileNetV3-Large x0.5 / 0.75 / 1.0 / 1.25")
    for row in table[~table["kind"].str.startswith("reference") & table["test_acc"].notna()].itertuples():
        ax.plot(row.pixel_cpu_ms, row.test_acc, "*", ms=11, color="C3")
        ax.annotate(row.network, (row.pixel_cpu_ms, row.test_acc), fontsize=7, xytext=(4, 3), textcoords="offset points")
    here = table[(table["kind"] == "reference (curve)") & (table["test_acc_from"] == "trained here")]
    if len(here) and c["test_acc"].notna().all():
        ax.plot(here["pixel_cpu_ms"], here["test_acc"], "s", color="C2", label="reference trained on this CPU")
    t_ms = stages.get("search_T", {}).get("latency_target_ms")
    if t_ms:
        ax.axvline(t_ms, color="k", ls=":", lw=1, label=f"T = {t_ms:.1f} ms")
        ax.axvline(TIGHT * t_ms, color="k", ls="--", lw=0.8, label=f"{TIGHT:g} T")
    ax.set(xlabel="pixel_cpu latency, ms (224x224, 1,000 classes)", ylabel="test accuracy",
           title=f"{label}\nsearched networks against MobileNetV3-Large's width curve")
    ax.legend(fontsize=8, loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def run(a) -> None:
    name = "headline" + ("_quick" if a.quick else "")
    work = (a.work or experiment_state(name)).resolve()
    plan = make_plan(a)
    data_sizes(plan.data)  # data it cannot read: one line, before anything runs
    plan_file = work / "plan.json"
    if plan_file.exists() and json.loads(plan_file.read_text()) != json.loads(json.dumps(asdict(plan), default=str)):
        raise UserError(f"{work} holds a run with other settings ({plan_file}); use another --work")
    write_json(plan_file, asdict(plan))
    a.results.mkdir(parents=True, exist_ok=True)
    stages = Stages(work)
    refresh = lambda: report(plan, work, a.results, name, a.quick)  # noqa: E731

    s_t = stages.run("search_T", lambda: search(plan, work / "search_T", None))
    stages.run("search_tight", lambda: search(plan, work / "search_tight", TIGHT * s_t["latency_target_ms"]))
    refresh()
    if a.stop_after == "search":
        return
    table = networks(plan, stages.done())
    archs = dict(zip(table["network"], table["arch"]))
    for net in train_order(plan, table):
        stages.run(f"train_{net}", lambda: recipe_train(plan, work, net, Arch.from_string(archs[net]), a.threads))
        if net == "T_1":
            stages.run("netadapt", lambda: netadapt_from_trained(
                plan, work, work / "search_T", default_out(Arch.from_string(archs["T_1"]), get_recipe("cifar10_18ep"),
                                                           plan.data, epochs=plan.epochs, batch_size=plan.batch_size),
                TIGHT * s_t["latency_target_ms"]))
            table = networks(plan, stages.done())
            archs = dict(zip(table["network"], table["arch"]))
            stages.run("train_netadapt_0.75T", lambda: recipe_train(
                plan, work, "netadapt_0.75T", Arch.from_string(archs["netadapt_0.75T"]), a.threads))
        refresh()
    table = networks(plan, stages.done())
    stages.run("latency", lambda: write_csv(work / "latency.csv", pd.DataFrame(
        [{"arch": arch, "measured_ms": m["median_ms"], "p10_ms": m["p10_ms"], "p90_ms": m["p90_ms"]}
         for arch, m in zip(table["arch"], measure_end_to_end([Arch.from_string(x) for x in table["arch"]], 1,
                                                               plan.measure))])) or {})
    print(refresh().drop(columns="arch").to_string(index=False), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings on digits: the code path, in minutes")
    p.add_argument("--data", help="cifar10:DIR (default ../shared/data; --quick: digits)")
    p.add_argument("--evaluator", default="zc:naswot", help="the searches' evaluator (nas search --evaluator)")
    p.add_argument("--trials", type=int, help="candidates per search (default 200; --quick 6)")
    p.add_argument("--finalists", type=int, help="top candidates of each search trained with the recipe (default 2)")
    p.add_argument("--train-references", default=f"{CURVE}_x0.75",
                   help="references trained here with the recipe, comma-separated (default: the recipe's check)")
    p.add_argument("--gt", type=Path, default=SHARED / "gt" / "cifar10_18ep.csv", help="the shared ground truth")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the trainings (pin with taskset)")
    p.add_argument("--stop-after", choices=["search"], help="stop after the searches")
    p.add_argument("--work", type=Path, help="work directory (default ~/.cache/hw-nas/experiments/headline[_quick])")
    p.add_argument("--results", type=Path, default=HERE / "results", help="where the CSV, Markdown and plot go")
    return run_script(p, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
