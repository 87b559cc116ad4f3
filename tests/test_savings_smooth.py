"""Channel-anchored predictions of ops a table lacks (what NetAdapt's cuts create)."""
from __future__ import annotations

import numpy as np
import pytest

from latency_tables.model import modelled_stats
from latency_tables.ops import Op, parse_key
from latency_tables.smooth import Anchored, anchored, family
from latency_tables.table import LatencyTable, new_metadata, op_row
from search_spaces.errors import UserError


def block(mid: int, hw: int = 14) -> Op:
    return parse_key(f"ir:i80_o80_m{mid}_k3_s1_hswish_r@r{hw}")


def table(ms_by_op: dict[Op, float]) -> LatencyTable:
    rows = [op_row(op, modelled_stats(ms), "measured") for op, ms in ms_by_op.items()]
    return LatencyTable(rows, new_metadata("fake", "mnv3", 224, 1))


def test_family_ignores_channels_only():
    assert family(block(240)) == family(parse_key("ir:i40_o48_m96_k3_s1_hswish_r@r14"))
    assert family(block(240)) != family(block(240, hw=28))
    assert family(block(240)) != family(parse_key("ir:i80_o80_m240_k5_s1_hswish_r@r14"))


def test_missing_op_scaled_from_nearest_measured_op():
    # measurements noisy around a smooth law: a cut predicted from the difference of two entries
    # would be noise; anchored, it is the model's share of the nearest measured op
    measured = {block(m): 0.001 * m * (1.3 if m == 480 else 1.0) for m in (120, 240, 480, 640)}
    measured |= {parse_key(f"ir:i{c}_o{c}_m{3 * c}_k5_s2_relu@r28"): 0.002 * c for c in (16, 24, 40, 80)}
    t = anchored(table(measured), block=1)
    policy = t.missing
    assert isinstance(policy, Anchored)
    cut = block(472)
    ratio = policy.model.predict([cut, block(480)])
    assert t.query_op(cut) == pytest.approx(measured[block(480)] * ratio[0] / ratio[1])
    assert t.query_op(cut) < measured[block(480)]
    assert t.query_op(block(232)) == pytest.approx(measured[block(240)] * np.divide(*policy.model.predict([block(232), block(240)])))
    # a measured op keeps its own value; the source says which rows are predicted
    assert t.query_op(block(480)) == measured[block(480)]
    assert set(t.df.loc[t.df["key"].isin([cut.key, block(232).key]), "source"]) == {"model"}


def test_unknown_family_goes_to_the_tables_own_policy():
    t = anchored(table({block(240): 0.2, block(480): 0.4}), block=1)
    with pytest.raises(UserError, match="not in the latency table"):
        t.query_op(block(240, hw=28))


def test_nothing_measured_nothing_to_anchor_on():
    empty = table({})
    assert anchored(empty) is empty


def test_channel_block_rounds_channels_up_as_the_runtime_computes_them():
    # 16-channel blocks: mid 472 is computed as 480, so it costs what the measured 480 costs (a cut
    # inside a block saves nothing), and 464 costs one block less
    measured = {block(m): 0.001 * m for m in (240, 480, 640)}
    aligned = anchored(table(measured), block=16)
    assert aligned.query_op(block(472)) == measured[block(480)]
    assert aligned.query_op(block(464)) < measured[block(480)]
    plain = anchored(table(measured), block=1)
    assert plain.query_op(block(472)) < measured[block(480)]
