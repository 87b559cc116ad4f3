"""What a search's summary claims: ties the validation split cannot resolve, the trained reference."""
import dataclasses
import json

import pandas as pd
import pytest

from nas.run_config import RunConfig
from nas.search_report import in_window_shares, summary_text, tie_margin, versus_best

CFG = RunConfig.from_json(json.dumps({"space": "mnv3", "target": "pixel_cpu", "controller": "rl", "reward": "soft", "w": None,
       "latency_target_ms": 59.3, "latency_target_from": "mobilenet_v3_large on pixel_cpu", "data": "digits",
       "resolution": 8, "deploy_resolution": 224, "train_subset": None, "epochs": 8, "seed": 0, "trials": 4,
       "reference": "mobilenet_v3_large", "val_images": 144, "latency_window": [0.8, 1.1],
       "latency_window_ms": [47.4, 65.2], "latency_window_share": 0.16}), "test config", needed=())


def trials(accuracies, rejected=(3, 2, 0, 0)):
    n = len(accuracies)
    return pd.DataFrame({"trial": range(n), "accuracy": accuracies, "latency_ms": [55.0 + i for i in range(n)],
                         "reward": accuracies, "macs": [2e8] * n, "params": [3e6] * n, "seconds": [10.0] * n,
                         "status": ["ok"] * n, "arch": [f"a{i}" for i in range(n)], "reason": [""] * n,
                         "rejected_before": list(rejected)[:n]})


def test_tie_margin_is_the_two_proportion_test():
    # 1.96 x sqrt(2 x 0.9 x 0.1 / 144) = 0.0693
    assert tie_margin(0.9, 144) == pytest.approx(0.0693, abs=1e-4)
    assert tie_margin(0.9, 14400) == pytest.approx(0.00693, abs=1e-5)  # 100x the images, 10x the resolution
    # pooled at the mean of the pair: 0.9 vs 0.95 resolves 0.061 (tied), 0.85 vs 0.95 resolves 0.072
    verdict = versus_best(pd.Series([0.95, 0.9, 0.85]), 0.95, 144).tolist()
    assert verdict == ["best", "tied", "worse"]


def test_summary_states_ties_and_the_reference():
    ref = trials([0.93]).assign(name="mobilenet_v3_large", latency_ms=59.3)
    text = summary_text(CFG, trials([0.95, 0.94, 0.7, 0.6]), trials([0.95]), {}, trained_ref=ref)
    assert "2 of 4 candidates are statistically tied on accuracy (trials 0, 1)" in text
    assert "mobilenet_v3_large trained with the same proxy recipe: validation accuracy 0.9300" in text
    assert "statistically tied with it" in text and "| reference |" in text
    text = summary_text(CFG, trials([0.95, 0.7, 0.6, 0.5]), trials([0.95]), {},
                        trained_ref=ref.assign(accuracy=0.5))
    assert "No other candidate is tied" in text and "more accurate than it" in text
    assert "5 proposals rejected outside the window" in text


def test_in_window_share_per_part():
    assert in_window_shares(trials([0.5] * 4)) == [0.25, pytest.approx(1 / 3), 1.0, 1.0]


def test_summary_says_how_candidates_were_scored(tmp_path):
    assert "8 epoch(s) per candidate" in summary_text(CFG, trials([0.9]), trials([0.9]), {})
    supernet = dataclasses.replace(CFG, evaluator=f"supernet:{tmp_path}")
    text = summary_text(supernet, trials([0.9]), trials([0.9]), {})
    assert "epoch(s) per candidate" not in text
    assert f"no training per candidate: scored as a slice of the supernet {tmp_path}" in text
