"""Reports of a search run: pareto.csv, reward.png, pareto.png and summary.md (all atomic)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nas.reward import pareto_front  # noqa: E402
from nas.run_dir import RunDir, write_csv, write_text  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402

REFERENCES = ("mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v2", "mnasnet_a1", "proxylessnas_mobile")
TOP_COLUMNS = ["trial", "accuracy", "latency_ms", "reward", "macs", "params", "seconds"]


def reference_latencies(cfg: dict) -> dict[str, float]:
    """Latency of each reference architecture on the run's target, as deployed by this run."""
    from nas.evaluation import cached_target
    from search_spaces.references import reference

    table = cached_target(cfg["target"])
    return {name: table.query_total(reference(name).replace(num_classes=cfg["num_classes"],
                                                            resolution=cfg["deploy_resolution"]))
            for name in REFERENCES}


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    def cell(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_reward(trials: pd.DataFrame, path) -> None:
    ok = trials[trials["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(ok["trial"], ok["reward"], s=12, label="candidate")
    ax.plot(ok["trial"], ok["reward"].cummax(), color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel="reward", title="reward over trials")
    ax.legend()
    _save(fig, path)


def plot_pareto(trials: pd.DataFrame, front: pd.DataFrame, refs: dict, target_ms: float, path) -> None:
    ok = trials[trials["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.scatter(ok["latency_ms"], ok["accuracy"], s=12, alpha=0.6, label="candidates")
    ax.step(front["latency_ms"], front["accuracy"], where="post", color="C3", marker="o", label="Pareto front")
    ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target T = {target_ms:.1f} ms")
    for i, (name, ms) in enumerate(refs.items()):  # references are untrained here: marked by latency
        ax.axvline(ms, color=f"C{4 + i}", ls=":", lw=1, label=f"{name} ({ms:.1f} ms)")
    ax.set(xlabel="latency (ms, target table)", ylabel="validation accuracy (proxy)",
           title="accuracy vs latency")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def in_window_shares(trials: pd.DataFrame, parts: int = 4) -> list[float]:
    """Share of the controller's proposals that fell inside the latency window, per consecutive
    part of the trials: how fast it learned to stay in budget."""
    rejected = trials["rejected_before"].fillna(0).astype(float).to_numpy()
    chunks = [c for c in np.array_split(rejected, min(parts, len(rejected))) if len(c)]
    return [len(c) / (len(c) + c.sum()) for c in chunks]


def window_lines(cfg: dict, trials: pd.DataFrame) -> list[str]:
    if "latency_window" not in cfg:
        return []
    (lo, hi), (low_ms, high_ms) = cfg["latency_window"], cfg["latency_window_ms"]
    rejected = int(trials["rejected_before"].fillna(0).sum())
    shares = ", ".join(f"{s:.0%}" for s in in_window_shares(trials)) if len(trials) else "-"
    return [f"- latency window [{lo:g}, {hi:g}] x T = [{low_ms:.2f}, {high_ms:.2f}] ms, holding "
            f"{cfg['latency_window_share']:.1%} of random networks: only candidates inside it are trained",
            f"- {rejected} proposals rejected outside the window (untrained); share of proposals inside it, "
            f"by quarter of the trials: {shares}"]


def summary_text(cfg: dict, trials: pd.DataFrame, front: pd.DataFrame, refs: dict, top: int = 5) -> str:
    ok = trials[trials["status"] == "ok"].sort_values("reward", ascending=False)
    failed = trials[trials["status"] != "ok"]
    lines = [f"# Search {cfg['space']} on {cfg['target']}", "",
             f"- controller `{cfg['controller']}`, reward `{cfg['reward']}` (w = {cfg.get('w') or 'default'}), "
             f"latency target T = {cfg['latency_target_ms']:.2f} ms ({cfg['latency_target_from']})",
             f"- data `{cfg['data']}` at {cfg['resolution']}x{cfg['resolution']} (deployment {cfg['deploy_resolution']}), "
             f"train subset {cfg['train_subset'] or 'all'}, {cfg['epochs']} epoch(s) per candidate, seed {cfg['seed']}",
             f"- trials: {len(trials)} of {cfg['trials']} ({len(failed)} failed), "
             f"{trials['seconds'].sum() / 60:.1f} min of candidate evaluation", *window_lines(cfg, trials), ""]
    if ok.empty:
        return "\n".join(lines + ["No candidate finished successfully."]) + "\n"
    best = ok.iloc[0]
    ref_ms = refs.get(cfg["reference"])
    lines += ["## Best candidate", "",
              f"trial {best['trial']}: reward {best['reward']:.4f}, validation accuracy {best['accuracy']:.4f}, "
              f"latency {best['latency_ms']:.2f} ms, {best['macs'] / 1e6:.1f}M MACs, {best['params'] / 1e6:.2f}M params"]
    if ref_ms:
        lines.append(f"(the space's reference {cfg['reference']} takes {ref_ms:.2f} ms on this target: "
                     f"the candidate is {ref_ms / best['latency_ms']:.2f}x its speed)")
    lines += ["", f"`{best['arch']}`", "", "Files: best/arch.json, best/model.pt, best/model.onnx.", "",
              f"## Top {min(top, len(ok))} by reward", "", markdown_table(ok[TOP_COLUMNS].head(top)), "",
              f"## Pareto front ({len(front)} candidates)", "", markdown_table(front[TOP_COLUMNS]), "",
              "## References on this target (latency only; not trained here)", "",
              markdown_table(pd.DataFrame({"architecture": list(refs), "latency_ms": list(refs.values())}))]
    if not failed.empty:
        lines += ["", "## Failed candidates", "", markdown_table(failed[["trial", "reason"]])]
    return "\n".join(lines) + "\n"


def write_reports(run: RunDir, trials: pd.DataFrame) -> None:
    cfg = run.config()
    front = pareto_front(trials)
    refs = reference_latencies(cfg)
    write_csv(run / "pareto.csv", front)
    if (trials["status"] == "ok").any():
        plot_reward(trials, run / "reward.png")
        plot_pareto(trials, front, refs, cfg["latency_target_ms"], run / "pareto.png")
    write_text(run / "summary.md", summary_text(cfg, trials, front, refs))
