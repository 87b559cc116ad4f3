"""The savings experiment's arithmetic on tiny cases with fake measurements (no timing)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import erf

from experiments.latency_savings_fidelity import (cuts_to_measure, measured_savings, netadapt_proposals, noise_floor,
                                                 noise_tau, score, session_pairs, split_half_tau)
from latency_tables.model import OpModel
from latency_tables.missing import Predict
from latency_tables.table import LatencyTable, new_metadata
from netadapt.surgery import units
from search_spaces.references import reference


def test_measured_savings_pair_rounds():
    # round 3 is a slow phase hitting parent and child alike: paired differences ignore it
    parent = [10.0, 10.0, 10.0, 30.0, 10.0]
    child = [9.0, 9.0, 9.5, 28.0, 9.0]
    parent_ms, child_ms, saving = measured_savings([parent, child])
    assert parent_ms == 10.0
    assert child_ms.tolist() == [9.0]
    assert saving.tolist() == [1.0]


def test_session_pairs_average_and_split_in_halves():
    # (parent, child, saving) per session pair; pairs 0-1 and 2-3 each hold both creation orders
    pairs = [(10.0, 9.0, 1.0), (10.2, 9.0, 1.2), (10.0, 9.2, 0.8), (10.2, 9.2, 1.0)]
    s = session_pairs(pairs)
    assert s["parent_ms"] == pytest.approx(10.1) and s["child_ms"] == pytest.approx(9.1)
    assert s["measured_saving_ms"] == pytest.approx(1.0)
    assert s["saving_se_ms"] == pytest.approx(np.std([1.1, 0.9], ddof=1) / np.sqrt(2))  # over twos of either order
    assert (s["saving_half1_ms"], s["saving_half2_ms"]) == pytest.approx((1.1, 0.9))


def fake(rows, se: float = 0.1):
    df = pd.DataFrame(rows, columns=["network", "unit", "width_to", "measured_saving_ms", "pred"])
    return df.assign(saving_se_ms=se, saving_half1_ms=df["measured_saving_ms"], saving_half2_ms=df["measured_saving_ms"])


def test_score_tau_errors_and_shares():
    cuts = fake([("n", "control", 0, 0.02, 0.0),
                 ("n", "a", 8, 1.0, 1.1),     # err 0.1 = 9.1% of 1.1
                 ("n", "b", 8, 2.0, 1.5),     # err 0.5 = 33% of 1.5
                 ("n", "c", 8, 3.0, 3.3),     # err 0.3 = 9.1% of 3.3
                 ("n", "d", 8, 0.1, 0.5)])    # err 0.4 = 80% of 0.5
    props = pd.DataFrame([("n", 0.01, 1.0, "a", 8), ("n", 0.01, 1.0, "b", 8), ("n", 0.01, 1.0, "d", 8),
                          ("n", 0.01, 1.0, "c", 16)],   # not measured: left out of both shares
                         columns=["network", "goal_frac", "goal_ms", "unit", "width_to"])
    s = score(cuts, props, "pred")
    assert s["cuts"] == 4
    # Kendall's tau without ties: (concordant - discordant) / pairs
    pred, meas = [1.1, 1.5, 3.3, 0.5], [1.0, 2.0, 3.0, 0.1]
    concordant = sum(np.sign(pred[i] - pred[j]) == np.sign(meas[i] - meas[j]) for i in range(4) for j in range(i))
    assert s["kendall_tau"] == pytest.approx((2 * concordant - 6) / 6)
    assert s["kendall_tau_half"] == pytest.approx(s["kendall_tau"])   # both halves measured alike here
    assert s["median_abs_err_ms"] == pytest.approx(0.35)
    assert s["median_abs_err_pct"] == pytest.approx((0.1 / 1.1 + 0.5 / 1.5) / 2 * 100, rel=1e-6)
    assert s["proposals"] == 4 and s["proposals_unmeasured"] == 1
    assert s["reach_goal"] == pytest.approx(2 / 3)      # a (1.0 >= 1.0) and b
    assert s["within_20pct"] == pytest.approx(1 / 3)    # only a
    # an exact promise, measured with noise of s.e. 0.1 ms: P(|N(0, 0.1)| <= 20% of the promise)
    promised = np.array([1.1, 1.5, 0.5])
    assert s["within_20pct_if_exact"] == pytest.approx(erf(0.2 * promised / (0.1 * np.sqrt(2))).mean())
    assert noise_floor(cuts) == pytest.approx(0.02)


def test_split_half_tau_is_the_measurements_agreement_with_itself():
    rows = [("n", "control", 0, 0.0, 0.0)] + [("n", u, 8, m, 0.0) for u, m in zip("abcd", (0.1, 0.2, 0.3, 0.4))]
    cuts = fake(rows)
    assert split_half_tau(cuts) == pytest.approx(1.0)
    cuts.loc[1:, "saving_half2_ms"] = cuts.loc[1:, "saving_half1_ms"].to_numpy()[::-1]   # the repeat ranks them backwards
    assert split_half_tau(cuts) == pytest.approx(-1.0)
    props = pd.DataFrame([("n", 0.01, 0.1, "a", 8)], columns=["network", "goal_frac", "goal_ms", "unit", "width_to"])
    # a predictor ranking like one half and backwards from the other: tau 1 and -1, 0 on average
    assert score(cuts, props, "saving_half1_ms")["kendall_tau_half"] == pytest.approx(0.0)


def test_noise_tau_falls_with_the_measurements_noise():
    rows = [("n", u, 8, m, 0.0) for u, m in zip("abcdefgh", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8))]
    assert noise_tau(fake(rows, se=0.0)) == pytest.approx(1.0)
    assert noise_tau(fake(rows, se=0.01)) == pytest.approx(1.0)         # noise far below the steps between savings
    assert abs(noise_tau(fake(rows, se=10.0))) < 0.5      # noise far above them


def linear_table(per_channel_ms: float) -> LatencyTable:
    """A table predicting every op from a one-feature model (latency grows with memory traffic)."""
    table = LatencyTable(None, new_metadata("fake", "mnv3", 224, 1))
    table.missing = Predict(OpModel({"mem_melems": per_channel_ms, "ops": 0.01}))
    return table


def test_proposals_and_cuts_to_measure():
    arch = reference("mobilenet_v3_small")
    table = linear_table(0.5)
    props = netadapt_proposals("s", arch, table, goals=(0.01,))
    total = table.query_total(arch)
    assert len(props) > 3 and props["goal_ms"].tolist() == pytest.approx([0.01 * total] * len(props))
    for p in props.itertuples():  # every proposal meets its goal on the table
        cut = next(c for c in cuts_to_measure("s", arch, props[props["unit"] == p.unit], (1,))
                   if c.unit == p.unit and c.width_to == p.width_to)
        assert total - table.query_total(cut.arch) >= p.goal_ms - 1e-9
    cuts = cuts_to_measure("s", arch, props.iloc[:0], (1, 2))
    by_unit = {u.name: u.width for u in units(arch)}
    assert {(c.unit, c.width_to) for c in cuts} <= {(u, w - 8 * k) for u, w in by_unit.items() for k in (1, 2)}
    assert all(c.width_from == by_unit[c.unit] and c.arch != arch for c in cuts)
