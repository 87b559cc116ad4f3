"""`nas train`: train a search's top-K candidates longer, test them, and mark the winner.

Each rank is written to final/<rank>/ (arch.json, model.pt, model.onnx, result.json last),
so an interrupted run continues with the ranks not yet done. The winner is the candidate
with the best reward computed from its validation accuracy (the test set only reports: a
winner picked on it would make its test accuracy an optimistic estimate); NetAdapt starts from
final/winner.json.
"""
from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd
import torch
from tqdm import tqdm

from nas.data import load_data
from nas.device import describe, describe_line
from nas.evaluation import cpu_state_dict, train_config
from nas.reward import Reward
from nas.run_config import Bound
from nas.run_dir import RunDir, save_deployment, write_csv, write_json
from nas.training import build_for_training, evaluate, train
from search_spaces.errors import UserError
from search_spaces.ir import Arch


def top_candidates(trials: pd.DataFrame, k: int) -> pd.DataFrame:
    ok = trials[trials["status"] == "ok"].sort_values(["reward", "trial"], ascending=[False, True])
    return ok.drop_duplicates("arch").head(k)


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
    on = describe_line(describe(device))
    rows = []
    for rank, cand in enumerate(tqdm(chosen.to_dict("records"), desc="final training", unit="model",
                                     disable=not progress), start=1):
        out = run / "final" / str(rank)
        done = out / "result.json"
        if done.exists() and json.loads(done.read_text())["trial"] == cand["trial"]:
            rows.append(json.loads(done.read_text()))
            continue
        arch = Arch.from_string(cand["arch"])
        model = build_for_training(arch, data, seed=cfg.seed)
        result = train(model, data, train_config(job, epochs=epochs))
        test_acc = evaluate(model, data.test)
        save_deployment(out, arch, cpu_state_dict(model))
        row = {"rank": rank, "trial": int(cand["trial"]), "test_accuracy": test_acc, "val_accuracy": result["val_acc"],
               "search_accuracy": cand["accuracy"], "latency_ms": cand["latency_ms"], "macs": int(cand["macs"]),
               "params": int(cand["params"]), "reward": reward.scalar(result["val_acc"], cand["latency_ms"]),
               "epochs": epochs, "seconds": result["seconds"], "device": on, "dir": f"final/{rank}",
               "arch": cand["arch"]}
        write_json(done, row)
        rows.append(row)
    results = pd.DataFrame(rows)
    write_csv(run / "final" / "results.csv", results)
    win = results.loc[results["reward"].idxmax()].to_dict()
    write_json(run / "final" / "winner.json", win | {"arch_json": f"{win['dir']}/arch.json",
                                                      "weights": f"{win['dir']}/model.pt",
                                                      "onnx": f"{win['dir']}/model.onnx"})
    return results
