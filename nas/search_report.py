"""Reports of a search run: pareto.csv, reward.png, pareto.png and summary.md (all atomic)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nas.device import describe_line
from nas.reward import pareto_front
from nas.run_config import RunConfig
from nas.run_dir import RunDir, write_csv, write_text
from nas.evaluators import ZeroCost, evaluator
from search_spaces.atomic import atomic_write

TOP_COLUMNS = ["trial", "accuracy", "latency_ms", "reward", "macs", "params", "seconds"]


def reference_latencies(cfg: RunConfig) -> dict[str, float]:
    """Latency of each reference architecture on the run's target, as deployed by this run."""
    from nas.evaluation import cached_target
    from search_spaces.references import REFERENCES, reference

    table = cached_target(cfg.target)
    return {name: table.query_total(reference(name).replace(num_classes=cfg.num_classes,
                                                            resolution=cfg.deploy_resolution))
            for name in REFERENCES}


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    def cell(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _save(fig, path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def plot_reward(trials: pd.DataFrame, path) -> None:
    ok = trials[trials["status"] == "ok"]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.scatter(ok["trial"], ok["reward"], s=12, label="candidate")
    ax.plot(ok["trial"], ok["reward"].cummax(), color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel="reward", title="reward over trials")
    ax.legend()
    _save(fig, path)


def plot_pareto(trials: pd.DataFrame, front: pd.DataFrame, refs: dict, target_ms: float, ylabel: str,
                path) -> None:
    ok = trials[trials["status"] == "ok"]
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    ax.scatter(ok["latency_ms"], ok["accuracy"], s=12, alpha=0.6, label="candidates")
    ax.step(front["latency_ms"], front["accuracy"], where="post", color="C3", marker="o", label="Pareto front")
    ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target T = {target_ms:.1f} ms")
    for i, (name, ms) in enumerate(refs.items()):  # references are untrained here: marked by latency
        ax.axvline(ms, color=f"C{4 + i}", ls=":", lw=1, label=f"{name} ({ms:.1f} ms)")
    ax.set(xlabel="latency (ms, target table)", ylabel=ylabel, title=f"{ylabel} vs latency")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def device_lines(cfg: RunConfig) -> list[str]:
    if cfg.device_info is None and cfg.gpus_per_trial is None and cfg.device == "cpu":
        return []  # a run made before --device existed: it trained on the CPU
    info = cfg.device_info
    where = describe_line(info) if info else "each trial's node (a Ray cluster)"
    gpus = cfg.gpus_per_trial
    if cfg.device.startswith("cuda:"):  # chosen by the user, not assigned by Ray
        return [f"- device `{cfg.device}`: {where}; every trial on this GPU, one at a time"]
    return [f"- device `{cfg.device}`: {where}; GPUs per trial "
            f"{'1 if there is a GPU, else 0 (default)' if gpus is None else f'{gpus:g}'}"]


def in_window_shares(trials: pd.DataFrame, parts: int = 4) -> list[float]:
    """Share of the controller's proposals that fell inside the latency window, per consecutive
    part of the trials: how fast it learned to stay in budget."""
    rejected = trials["rejected_before"].fillna(0).astype(float).to_numpy()
    chunks = [c for c in np.array_split(rejected, min(parts, len(rejected))) if len(c)]
    return [len(c) / (len(c) + c.sum()) for c in chunks]


def tie_margin(accuracy, n: int, z: float = 1.96):
    """Smallest accuracy difference that `n` validation images resolve at 95% (two-proportion
    z-test, pooled at `accuracy`, the mean of the two): closer candidates are statistically tied."""
    return z * np.sqrt(2 * np.asarray(accuracy, float) * (1 - np.asarray(accuracy, float)) / n)


def versus_best(accuracy: pd.Series, best: float, n: int) -> pd.Series:
    """"best", "tied" (within the validation split's resolution of the best) or "worse"."""
    acc = accuracy.astype(float).to_numpy()
    gap = best - acc
    return pd.Series(np.where(gap <= 0, "best", np.where(gap < tie_margin((best + acc) / 2, n), "tied", "worse")),
                     index=accuracy.index)


def ranking_lines(cfg: RunConfig, ok: pd.DataFrame) -> list[str]:
    """How many of the top candidates the validation split cannot tell apart from the best."""
    n, best = cfg.val_images, float(ok["accuracy"].max())
    tied = ok[versus_best(ok["accuracy"], best, n) != "worse"]
    text = (f"Statistical resolution: with {n} validation images, accuracies within about {tie_margin(best, n):.3f} "
            f"of the best ({best:.3f}) cannot be told apart (two-proportion test, 95%). ")
    if len(tied) > 1:
        text += (f"{len(tied)} of {len(ok)} candidates are statistically tied on accuracy (trials "
                 f"{', '.join(str(t) for t in tied['trial'])}): their ranking by reward is decided by latency "
                 f"and noise, not by a measured accuracy difference.")
    else:
        text += "No other candidate is tied with the most accurate one."
    return [text, ""]


def reference_lines(cfg: RunConfig, best: pd.Series, ref: pd.DataFrame | None) -> list[str]:
    """The winner against the space's reference, trained in this run with the same proxy recipe."""
    if ref is None or ref.iloc[0]["status"] != "ok":
        return []
    r, n = ref.iloc[0], cfg.val_images
    gap = float(best["accuracy"]) - float(r["accuracy"])
    margin = tie_margin((float(best["accuracy"]) + float(r["accuracy"])) / 2, n)
    verdict = ("statistically tied with it" if abs(gap) < margin else
               "more accurate than it" if gap > 0 else "less accurate than it")
    return ["## Against the reference", "",
            f"{r['name']} trained with the same proxy recipe: validation accuracy {r['accuracy']:.4f} at "
            f"{r['latency_ms']:.2f} ms. The best candidate: {best['accuracy']:.4f} at {best['latency_ms']:.2f} ms "
            f"({best['latency_ms'] / r['latency_ms']:.2f}x its latency), {verdict} (difference {gap:+.4f}; "
            f"{n} validation images resolve {margin:.3f}).", ""]


def window_lines(cfg: RunConfig, trials: pd.DataFrame) -> list[str]:
    if cfg.latency_window is None:  # a run made before the window existed
        return []
    (lo, hi), (low_ms, high_ms) = cfg.latency_window, cfg.latency_window_ms
    rejected = int(trials["rejected_before"].fillna(0).sum())
    shares = ", ".join(f"{s:.0%}" for s in in_window_shares(trials)) if len(trials) else "-"
    return [f"- latency window [{lo:g}, {hi:g}] x T = [{low_ms:.2f}, {high_ms:.2f}] ms, holding "
            f"{cfg.latency_window_share:.1%} of random networks: only candidates inside it are scored",
            f"- {rejected} proposals rejected outside the window (unscored); share of proposals inside it, "
            f"by quarter of the trials: {shares}"]


def measured_accuracy(cfg: RunConfig) -> bool:
    """False when the accuracy column holds a zero-cost score's quantile among random networks
    (`nas.evaluators.ZeroCost`): no images measured it, so no test of ties applies to it."""
    return not isinstance(evaluator(cfg.evaluator), ZeroCost)


def accuracy_label(cfg: RunConfig) -> str:
    return "validation accuracy" if measured_accuracy(cfg) else f"{cfg.evaluator} score quantile (not an accuracy)"


def scoring_words(cfg: RunConfig) -> str:
    """How a candidate got its accuracy (a supernet or a benchmark trains nothing per candidate)."""
    return evaluator(cfg.evaluator).describe(cfg)


def final_lines(final: dict | None) -> list[str]:
    """The summary's opening when the top candidates were trained (`nas train`, `--final-top`): the
    winner that best/ holds, and, when the space has a reference, whether it beats it."""
    if not final:
        return []
    lines = ["## Winner (trained)", "",
             f"trial {final['trial']} trained {final['epochs']:g} epoch(s): validation accuracy "
             f"{final['val_accuracy']:.4f}, test accuracy {final['test_accuracy']:.4f}, latency "
             f"{final['latency_ms']:.2f} ms, {final['macs'] / 1e6:.1f}M MACs, {final['params'] / 1e6:.2f}M params; "
             f"picked among the top candidates on validation accuracy (reward), see final/results.csv.",
             "", f"`{final['arch']}`", "", "Files: best/arch.json, best/model.pt, best/model.onnx (copied from "
             f"{final['dir']}/).", ""]
    ref, vs = final.get("reference"), final.get("versus_reference")
    if ref and vs:
        lines += ["### Against the reference, trained the same way", "",
                  f"{ref['name']}: test accuracy {ref['test_accuracy']:.4f} at {ref['latency_ms']:.2f} ms. The winner "
                  f"**{vs['verdict']}** it: {vs['accuracy_gap']:+.4f} test accuracy at {vs['latency_ratio']:.2f}x its "
                  f"latency. Paired on the same {vs['images']} test images (McNemar's exact test): the winner alone "
                  f"is right on {vs['a_only']}, the reference alone on {vs['b_only']}, p = {vs['p']:.3g} "
                  f"({'a difference' if vs['p'] < 0.05 else 'no significant difference'} at 5%).", ""]
    return lines


def summary_text(cfg: RunConfig, trials: pd.DataFrame, front: pd.DataFrame, refs: dict, top: int = 5,
                 trained_ref: pd.DataFrame | None = None, final: dict | None = None) -> str:
    ok = trials[trials["status"] == "ok"].sort_values("reward", ascending=False)
    failed = trials[trials["status"] != "ok"]
    lines = [f"# Search {cfg.space} on {cfg.target}", "",
             f"- controller `{cfg.controller}`, reward `{cfg.reward}` (w = {cfg.w or 'default'}), "
             f"latency target T = {cfg.latency_target_ms:.2f} ms ({cfg.latency_target_from})",
             f"- data `{cfg.data}` at {cfg.resolution}x{cfg.resolution} (deployment {cfg.deploy_resolution}), "
             f"train subset {cfg.train_subset or 'all'}, {scoring_words(cfg)}, seed {cfg.seed}",
             f"- trials: {len(trials)} of {cfg.trials} ({len(failed)} failed), "
             f"{trials['seconds'].sum() / 60:.1f} min of candidate evaluation", *device_lines(cfg), *window_lines(cfg, trials), ""]
    if ok.empty:
        return "\n".join(lines + ["No candidate finished successfully."]) + "\n"
    best = ok.iloc[0]
    ref_ms = refs.get(cfg.reference)
    measured = measured_accuracy(cfg)
    lines += final_lines(final)
    lines += ["## Best candidate of the search" if final else "## Best candidate", "",
              f"trial {best['trial']}: reward {best['reward']:.4f}, {accuracy_label(cfg)} {best['accuracy']:.4f}, "
              f"latency {best['latency_ms']:.2f} ms, {best['macs'] / 1e6:.1f}M MACs, {best['params'] / 1e6:.2f}M params"]
    if ref_ms:
        lines.append(f"(the space's reference {cfg.reference} takes {ref_ms:.2f} ms on this target: "
                     f"the candidate is {ref_ms / best['latency_ms']:.2f}x its speed)")
    top_rows = ok[TOP_COLUMNS].head(top)
    if measured:
        top_rows = top_rows.assign(accuracy_vs_best=versus_best(ok["accuracy"], ok["accuracy"].max(), cfg.val_images))
    if trained_ref is not None:  # marked in the trial column; not a candidate of the search
        top_rows = pd.concat([top_rows, trained_ref.assign(trial="reference", accuracy_vs_best=versus_best(
            trained_ref["accuracy"], ok["accuracy"].max(), cfg.val_images))[top_rows.columns]])
    files = ("Its weights are not kept: best/ holds the trained winner above." if final else
             "Files: best/arch.json, best/model.pt, best/model.onnx." if measured else
             f"Files: best/arch.json, best/model.pt, best/model.onnx: UNTRAINED weights ({cfg.evaluator} scores "
             f"networks at initialization); train the top candidates with `nas train <this run directory>` before "
             f"deploying.")
    lines += ["", f"`{best['arch']}`", "", files, "",
              *reference_lines(cfg, best, trained_ref), *(ranking_lines(cfg, ok) if measured else []),
              f"## Top {min(top, len(ok))} by reward", "", markdown_table(top_rows), "",
              f"## Pareto front ({len(front)} candidates)", "", markdown_table(front[TOP_COLUMNS]), "",
              "## References on this target (latency)", "",
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
        ylabel = "validation accuracy (proxy)" if measured_accuracy(cfg) else accuracy_label(cfg)
        plot_pareto(trials, front, refs, cfg.latency_target_ms, ylabel, run / "pareto.png")
    final = run / "final" / "winner.json"
    write_text(run / "summary.md", summary_text(cfg, trials, front, refs, trained_ref=run.reference(),
                                                final=json.loads(final.read_text()) if final.exists() else None))
