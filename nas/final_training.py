"""`nas train` (and `nas search --final-top K`): train a search's top-K candidates longer, and the
space's reference network beside them with the same recipe; test them; mark the winner.

Each rank is written to final/<rank>/ (arch.json, model.pt, model.onnx, test_correct.npy,
result.json last), the reference to final/reference/, so an interrupted run continues with what
is not done yet. The winner is the candidate with the best reward computed from its validation
accuracy (the test set only reports: a winner picked on it would make its test accuracy an
optimistic estimate); it is copied to best/, which is what a user ships and NetAdapt starts from
(final/winner.json names it). Against the reference the winner is judged on the test images both
classified, image by image (McNemar's exact test), at its latency.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from nas.data import load_data
from nas.device import describe, describe_line
from nas.evaluation import cached_target, cpu_state_dict, train_config
from nas.reward import Reward
from nas.run_config import Bound
from nas.run_dir import RunDir, save_deployment, write_csv, write_json
from nas.training import build_for_training, correct, train
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.references import reference

#: a paired difference with a smaller two-sided p-value is called a difference, not a tie
SIGNIFICANCE = 0.05


def top_candidates(trials: pd.DataFrame, k: int) -> pd.DataFrame:
    ok = trials[trials["status"] == "ok"].sort_values(["reward", "trial"], ascending=[False, True])
    return ok.drop_duplicates("arch").head(k)


def mcnemar(a: np.ndarray, b: np.ndarray) -> dict:
    """McNemar's exact test of two classifiers on the same images: a binomial test on the images
    where exactly one of them is right. `a_only`/`b_only` count those images; `p` is two-sided."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return {"a_only": a_only, "b_only": b_only, "p": float(p)}


def versus_reference(win: dict, ref: dict, a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """The winner against the reference on the test split: the paired test and a one-word verdict
    that reads the latency too (more accurate and no slower: `beats`)."""
    test = mcnemar(a_correct, b_correct)
    gap = win["test_accuracy"] - ref["test_accuracy"]
    differs = test["p"] < SIGNIFICANCE
    faster = win["latency_ms"] <= ref["latency_ms"]
    if differs and gap > 0:
        verdict = "beats" if faster else "more accurate but slower than"
    elif differs:
        verdict = "less accurate than"
    else:
        verdict = "ties (faster)" if faster else "ties (slower)"
    return {"verdict": verdict, "accuracy_gap": gap, "latency_ratio": win["latency_ms"] / ref["latency_ms"],
            "images": int(len(a_correct))} | test


def _train_one(out, arch: Arch, data, cfg, seed: int, extra: dict, key: dict) -> dict:
    """Train `arch` into `out` (skipped when out/result.json holds the same `key`)."""
    done = out / "result.json"
    if done.exists():
        row = json.loads(done.read_text())
        if all(row.get(k) == v for k, v in key.items()) and (out / "test_correct.npy").exists():
            return row
    model = build_for_training(arch, data, seed=seed)
    result = train(model, data, cfg)
    hits = correct(model, data.test).numpy()
    save_deployment(out, arch, cpu_state_dict(model))
    atomic_write(out / "test_correct.npy", lambda tmp: _save_npy(tmp, hits))
    row = key | extra | {"test_accuracy": float(hits.mean()) if len(hits) else math.nan,
                         "val_accuracy": result["val_acc"], "seconds": result["seconds"]}
    write_json(done, row)
    return row


def _save_npy(path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to a path's name
        np.save(f, array)


def train_top(run: RunDir, top: int, epochs: float, device: torch.device = torch.device("cpu"),
              progress: bool = True) -> pd.DataFrame:
    cfg = run.config()
    Bound(1).check("--top", top)
    Bound(positive=True).check("--epochs", epochs)
    chosen = top_candidates(run.trials(), top)
    if chosen.empty:
        raise UserError(f"{run.path} has no successful candidate to train")
    data = load_data(cfg.data, resolution=cfg.resolution, train_subset=cfg.train_subset,
                     seed=cfg.seed).to(device)  # on a GPU: copied there once for all candidates
    reward = Reward(cfg.reward, cfg.latency_target_ms, cfg.w)
    job = asdict(cfg) | {"steps": None, "threads": None, "device": str(device)}
    train_cfg = train_config(job, epochs=epochs)
    on = describe_line(describe(device))
    ref_arch = (reference(cfg.reference).replace(num_classes=cfg.num_classes, resolution=cfg.deploy_resolution)
                if cfg.reference else None)
    jobs = [(str(rank), Arch.from_string(c["arch"]), c) for rank, c in enumerate(chosen.to_dict("records"), start=1)]
    rows, ref_row = [], None
    for name, arch, cand in tqdm(jobs + ([("reference", ref_arch, None)] if ref_arch else []),
                                 desc="final training", unit="model", disable=not progress):
        out = run / "final" / name
        key = {"trial": int(cand["trial"]) if cand else cfg.reference, "epochs": epochs, "arch": arch.to_string()}
        if cand is None:
            ref_row = _train_one(out, arch, data, train_cfg, cfg.seed, {
                "name": cfg.reference, "latency_ms": cached_target(cfg.target).query_total(arch),
                "device": on, "dir": "final/reference"}, key)
            continue
        row = _train_one(out, arch, data, train_cfg, cfg.seed, {
            "rank": int(name), "search_accuracy": cand["accuracy"], "latency_ms": cand["latency_ms"],
            "macs": int(cand["macs"]), "params": int(cand["params"]), "device": on, "dir": f"final/{name}"}, key)
        row["reward"] = reward.scalar(row["val_accuracy"], row["latency_ms"])
        rows.append(row)
    results = pd.DataFrame(rows)
    write_csv(run / "final" / "results.csv", results)
    win = results.loc[results["reward"].idxmax()].to_dict()
    marker = win | {"arch_json": f"{win['dir']}/arch.json", "weights": f"{win['dir']}/model.pt",
                    "onnx": f"{win['dir']}/model.onnx"}
    if ref_row is not None:
        marker["reference"] = ref_row
        marker["versus_reference"] = versus_reference(
            win, ref_row, np.load(run / win["dir"] / "test_correct.npy"),
            np.load(run / "final" / "reference" / "test_correct.npy"))
    publish_winner(run, marker)
    write_json(run / "final" / "winner.json", marker)
    from nas.search_report import write_reports  # the summary now opens with the trained winner
    write_reports(run, run.trials())
    return results


def publish_winner(run: RunDir, winner: dict) -> None:
    """best/ := the trained winner's deployment files (replacing the search's own best, whose weights
    a zero-cost screen never trained), with best/trial.json saying where they come from."""
    src = run / winner["dir"]
    for name in ("arch.json", "model.pt", "model.onnx"):
        atomic_write(run / "best" / name, lambda tmp, f=src / name: shutil.copyfile(f, tmp))
    write_json(run / "best" / "trial.json", {"trial": winner["trial"], "key": f"final/{winner['rank']}",
                                             "accuracy": winner["val_accuracy"], "latency_ms": winner["latency_ms"],
                                             "reward": winner["reward"], "trained": winner["dir"],
                                             "epochs": winner["epochs"]})
