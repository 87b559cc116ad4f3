"""What a finished refinement leaves behind: tables, the network, a plot, a summary line."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from nas.run_dir import write_csv, write_text
from netadapt.refine import save_json, save_model
from search_spaces.atomic import atomic_write
from search_spaces.builder import Net
from search_spaces.ir import Arch
from search_spaces.onnx_export import export_onnx

SUMMARY_MARK = "- NetAdapt"


def plot(state: dict, path: Path) -> None:
    """Validation accuracy against predicted latency along the iterations."""
    from matplotlib.figure import Figure

    h = pd.DataFrame(state["history"])
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    ax.plot(h["predicted_ms"], h["acc_after_ft"], "o-", label="after short-term fine-tuning")
    ax.plot(h["predicted_ms"][:1], h["acc_after_ft"][:1], "*", ms=14, label="winner")
    ax.plot([state["latency_ms"]], [state["final_val_acc"]], "D", ms=9, label="after long-term fine-tuning")
    ax.axvline(state["budget_ms"], ls="--", c="gray", label=f"budget {state['budget_ms']:.2f} ms")
    for _, r in h.iloc[1:].iterrows():
        ax.annotate(str(r["iteration"]), (r["predicted_ms"], r["acc_after_ft"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.invert_xaxis()  # iterations run right to left as latency falls
    ax.set(xlabel=f"latency on {state['settings']['target']} (table-predicted, ms)", ylabel="validation accuracy",
           title="NetAdapt: accuracy vs latency along the iterations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))


def result(state: dict, out: Path) -> dict:
    h = state["history"]
    return {"out": str(out), "source": state["source"], "target": state["settings"]["target"],
            "iterations": state["iteration"], "stop": state["stop"],
            "start_ms": state["start_ms"], "final_ms": state["latency_ms"], "budget_ms": state["budget_ms"],
            "within_budget": state["latency_ms"] <= state["budget_ms"] + 1e-9,
            "start_measured_ms": h[0]["measured_ms"], "final_measured_ms": state["final_measured_ms"],
            "start_val_acc": h[0]["acc_after_ft"], "final_val_acc": state["final_val_acc"],
            "start_test_acc": state["start_test_acc"], "final_test_acc": state["final_test_acc"],
            "device": state.get("device"), "arch": Arch.from_dict(state["arch"]).to_string()}


def summary_line(r: dict) -> str:
    acc = f"test acc {r['start_test_acc']:.4f} -> {r['final_test_acc']:.4f}"
    budget = "within" if r["within_budget"] else "NOT within"
    return (f"{SUMMARY_MARK} (`{r['out']}`): {r['start_ms']:.3f} -> {r['final_ms']:.3f} ms on {r['target']} "
            f"({budget} the {r['budget_ms']:.3f} ms budget) in {r['iterations']} iteration(s), {acc}")


def append_summary(run_dir: Path, line: str, out: Path) -> None:
    """Add the line to the run's summary.md, replacing the line of an earlier refinement into `out`."""
    path = run_dir / "summary.md"
    lines = path.read_text().splitlines() if path.is_file() else []
    lines = [ln for ln in lines if not (ln.startswith(SUMMARY_MARK) and f"(`{out}`)" in ln)]
    write_text(path, "\n".join(lines + [line]) + "\n")


def write_outputs(state: dict, model: Net, run_dir: Path, out: Path) -> dict:
    """history.csv, proposals.csv, arch.json, model.pt, model.onnx, the plot, result.json and the
    run's summary line; the network is saved as its deployment architecture."""
    arch = Arch.from_dict(state["arch"])
    write_csv(out / "history.csv", pd.DataFrame(state["history"]))
    write_csv(out / "proposals.csv", pd.DataFrame(state["proposals"]))
    write_text(out / "arch.json", arch.to_json())
    deploy = Net(arch)
    deploy.load_state_dict(model.state_dict())  # proxy and deployment nets share parameter shapes
    save_model(out / "model.pt", deploy)
    export_onnx(deploy.eval(), out / "model.onnx")
    plot(state, out / "accuracy_vs_latency.png")
    r = result(state, out)
    save_json(out / "result.json", r)
    append_summary(run_dir, summary_line(r), out)
    return r
