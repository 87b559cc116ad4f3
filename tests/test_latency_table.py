"""Latency tables without timing: op keys, the file format, the Pixel 1 model, published imports."""
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latency_tables import LatencyTable, arch_ops, load_target, parse_key, space_ops
from latency_tables.model import OpModel
from latency_tables.ops import Op
from latency_tables.table import new_metadata, op_row
from latency_tables.targets import open_table
from search_spaces.errors import UserError
from search_spaces.ir import Arch, Block
from search_spaces.references import reference, scale_width
from search_spaces.space import get_space

SHARED = Path(__file__).resolve().parents[2] / "shared" / "latency_data"
PIXEL_YAML = SHARED / "proxylessnas_pixel1" / "mobile_trim.yaml"


def need_shared():
    if not PIXEL_YAML.exists():
        pytest.skip(f"published latency data not found at {SHARED}")


# ---- op keys -------------------------------------------------------------------
def test_keys_round_trip_and_match_the_ir_string():
    arch = reference("mobilenet_v3_large")
    ops = arch_ops(arch)
    assert [n for n, _ in ops][:2] == ["stem", "block0"] and ops[-1][0] == "head"
    ir_tokens = arch.to_string().split("|")[2:-1]
    for (name, op), token in zip(ops[1:-1], ir_tokens):
        assert op.key.split("@")[0] == token
    for _, op in ops:
        assert parse_key(op.key) == op and hash(parse_key(op.key)) == hash(op)
    assert ops[0][1].key == "stem:c16_k3_s2_hswish@r224_x3"
    assert ops[-1][1].key == "head:mnv3_c960_f1280_hswish@r7_x160_n1000"
    # dropout does not change the head's op
    assert arch_ops(arch.replace(head=arch.head.__class__("mnv3", 960, "hswish", 1280, 0.5)))[-1][1] == ops[-1][1]


@pytest.mark.parametrize("space_name", ["mnv3", "mnv3_small"])
def test_space_ops_cover_every_sampled_architecture(space_name):
    space = get_space(space_name)
    ops = set(space_ops(space))
    rng = random.Random(0)
    for _ in range(30):
        arch = space.decode(space.sample(rng))
        missing = [op.key for _, op in arch_ops(arch) if op not in ops]
        assert not missing
    assert all(op.hw in {224, 112, 56, 28, 14, 7} for op in ops)


@pytest.mark.parametrize("bad", ["ir:i16_o16_m16_k3_s1_relu", "ir:i16_o16_m16_k3_s1_relu@56",
                                 "stem:c16_k3_s2_hswish@r224", "xx:i16@r56", "ir:i16_o16_k3_s1_relu@r56"])
def test_malformed_keys_are_user_errors(bad):
    with pytest.raises(UserError, match="malformed op key"):
        parse_key(bad)


# ---- file format -----------------------------------------------------------------
def small_table(source="measured", **meta) -> LatencyTable:
    ops = [op for _, op in arch_ops(reference("mobilenet_v3_small").replace(resolution=64))]
    stats = {"mean_ms": 1.0, "median_ms": 0.9, "p10_ms": 0.8, "p90_ms": 1.2, "std_ms": 0.1, "count": 12}
    rows = [op_row(op, {**stats, "median_ms": 0.1 * (i + 1)}, source) for i, op in enumerate(ops)]
    return LatencyTable(rows, new_metadata("testdev", "mnv3_small", 64, 1, **meta))


def test_save_load_round_trip(tmp_path):
    table = small_table()
    path = table.save(tmp_path / "t.csv")
    back = LatencyTable.load(path)
    assert back.metadata == table.metadata
    pd.testing.assert_frame_equal(back.df, table.df, check_dtype=False)
    arch = reference("mobilenet_v3_small").replace(resolution=64)
    ms = dict(zip(table.df["key"], table.df["median_ms"]))
    assert back.query_total(arch) == pytest.approx(sum(ms[op.key] for _, op in arch_ops(arch)))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_key_twice_in_one_batch_keeps_its_last_row_and_the_file_loads(tmp_path):
    table = small_table()
    key = table.df["key"].iloc[0]
    row = table.df.iloc[0].to_dict()
    table.add_rows([{**row, "median_ms": 5.0}, {**row, "median_ms": 7.0}])
    assert (table.df["key"] == key).sum() == 1 and table.query_op(parse_key(key)) == 7.0
    assert LatencyTable.load(table.save(tmp_path / "t.csv")).query_op(parse_key(key)) == 7.0


BROKEN = [
    (lambda t: "key,mean_ms\nx,1\n", "first line"),
    (lambda t: "# nas-latency-table {oops\n" + t.split("\n", 1)[1], "not valid JSON"),
    (lambda t: t.replace('"schema_version": 1', '"schema_version": 99'), "schema version"),
    (lambda t: t.replace('"device": "testdev", ', ""), "metadata lacks device"),
    (lambda t: t.replace(",p10_ms,", ",p11_ms,"), "missing column"),
    (lambda t: t.replace(",measured", ",guessed", 1), "source 'guessed'"),
    (lambda t: t.replace(",0.1,", ",-0.1,", 1), "must be a positive number"),
    (lambda t: t.replace(",0.1,", ",fast,", 1), "non-number 'fast'"),
    (lambda t: t + t.splitlines()[2] + "\n", "appears twice"),
    (lambda t: t.replace("stem:c16_k3_s2_hswish@r64_x3", "stem:c16@r64_x3"), "malformed op key"),
    # every number checked: no infinite latency, an end-to-end term that keeps latencies positive
    (lambda t: t.replace(",0.1,", ",inf,", 1), r"column median_ms has an infinite value \(row 1\)"),
    (lambda t: t.replace(",12,", ",-inf,", 1), r"column count has an infinite value"),
    (lambda t: t.replace('"scale": 1.0', '"scale": -1'), r"network_term.scale must be positive, got -1"),
    (lambda t: t.replace('"scale": 1.0', '"scale": 0'), r"network_term.scale must be positive, got 0"),
    (lambda t: t.replace('"scale": 1.0', '"scale": "1.0"'), r"network_term.scale must be a finite number, got '1.0'"),
    (lambda t: t.replace('"scale": 1.0', '"scale": NaN'), r"network_term.scale must be a finite number, got nan"),
    (lambda t: t.replace('"offset_ms": 0.0', '"offset_ms": Infinity'), r"network_term.offset_ms must be a finite"),
    (lambda t: t.replace('"offset_ms": 0.0', '"offset_ms": -500'), r"network_term.offset_ms -500 is below minus"),
    (lambda t: t.replace('"offset_ms": 0.0, ', ''), r"network_term.offset_ms must be a finite number, got None"),
    (lambda t: t.replace('"per_input_melem_ms": 0.0', '"per_input_melem_ms": -1000'),
     r"network_term.per_input_melem_ms -1000 gives op \d+ a latency of -[\d.]+ ms inside a network"),
    (lambda t: t.replace('"per_mmac_ms": 0.0', '"per_mmac_ms": -1000'),
     r"gives op \d+ a latency of -[\d.]+ ms inside a network \(with per_mmac_ms -1000\)"),
    (lambda t: t.replace('"per_mmac_ms": 0.0', '"per_mmac_ms": NaN'), r"network_term.per_mmac_ms must be a finite"),
    (lambda t: t.replace('"network_term": {', '"network_term": [{').replace('"scale": 1.0}', '"scale": 1.0}]'),
     r"network_term must be a JSON object"),
]


@pytest.mark.parametrize("corrupt,message", BROKEN)
def test_broken_files_say_what_is_wrong(tmp_path, corrupt, message):
    path = small_table().save(tmp_path / "t.csv")
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(UserError, match=message) as e:
        LatencyTable.load(path)
    assert str(e.value).startswith(f"latency table {path}: ") and "\n" not in str(e.value)


def test_a_fitted_negative_offset_loads(tmp_path):
    table = small_table()
    table.metadata["network_term"] = {"scale": 0.9, "per_input_melem_ms": -1.3, "offset_ms": -0.7, "calibrated": True}
    back = LatencyTable.load(table.save(tmp_path / "t.csv"))
    assert back.network_term["offset_ms"] == -0.7


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        LatencyTable.load(tmp_path / "nope.csv")


def test_missing_op_without_model_or_device_names_the_op(tmp_path):
    table = open_table(small_table(cpu="some phone").save(tmp_path / "t.csv"))  # not this machine, no model
    assert not table.is_local and table.missing is None
    arch = reference("mobilenet_v3_small").replace(resolution=64)
    wider = scale_width(arch, 1.25)
    with pytest.raises(UserError, match=r"op stem:c24_k3_s2_hswish@r64_x3 is not in the latency table"):
        table.query_total(wider)
    with pytest.raises(UserError, match="64x64 inputs"):
        table.query_total(arch.replace(resolution=96))


def test_missing_op_comes_from_the_model_when_the_table_has_one(tmp_path):
    model = OpModel({"dense_mmacs": 0.1, "dw_mmacs": 0.2, "mem_melems": 1.0, "ops": 0.01})
    table = open_table(small_table(cpu="some phone", op_model=model.to_dict()).save(tmp_path / "t.csv"))
    op = Op(Block("ir", 24, 24, 136, 3, 1, "relu"), 8, 24)
    ms = table.query_op(op.key)
    assert ms == pytest.approx(model.predict([op])[0]) and ms > 0
    row = table.df.set_index("key").loc[op.key]
    assert row["source"] == "model" and row["count"] == 0


def test_the_caller_hands_in_the_missing_op_policy():
    asked = []

    def policy(table, ops):
        asked.append([op.key for op in ops])
        table.add_rows([op_row(op, {"median_ms": 2.0}, "model") for op in ops])

    table = small_table()
    table.missing = policy
    arch = reference("mobilenet_v3_small").replace(resolution=64)
    wider = scale_width(arch, 1.25)
    before = table.query_total(arch)
    assert asked == []  # every op present: the policy is not consulted
    table.query_total(wider)
    known = {op.key for _, op in arch_ops(arch)}
    assert asked == [list(dict.fromkeys(op.key for _, op in arch_ops(wider) if op.key not in known))]
    assert table.query_total(arch) == before and len(asked) == 1


# ---- pixel_cpu -----------------------------------------------------------------------
def test_pixel_cpu_ships_the_full_mnv3_table_of_model_rows():
    table = load_target("pixel_cpu")
    assert not table.is_local
    assert len(table) == len(space_ops(get_space("mnv3")))
    assert set(table.df["source"]) == {"model"}
    assert (table.df["median_ms"] > 0).all()
    assert table.metadata["op_model"]["provenance"]["loo_mean_abs_pct"] > 0
    row = table.df.set_index("key").loc["ir:i24_o40_m72_k5_s2_relu_se24h@r56"]  # fields spelled out
    assert (row["kind"], row["hw"], row["cin"], row["cout"], row["mid"], row["kernel"], row["stride"], row["act"],
            row["se"], bool(row["residual"])) == ("block", 56, 24, 40, 72, 5, 2, "relu", 24, False)
    # published orientation: MobileNetV2 1.0 at 224 about 75 ms on a Pixel 1
    assert 60 < table.query_total(reference("mobilenet_v2")) < 90


def test_pixel_cpu_orders_sensibly_and_predicts_trimmed_ops():
    table = load_target("pixel_cpu")
    arch = reference("mobilenet_v3_large")
    totals = [table.query_total(scale_width(arch, w)) for w in (0.5, 0.75, 1.0, 1.25)]
    assert totals == sorted(totals) and totals[0] > 0
    base = Op(Block("ir", 40, 40, 120, 5, 1, "relu", None, True), 28, 40)
    bigger = [base.layer.__class__("ir", 40, 40, mid, 5, 1, "relu", None, True) for mid in (128, 160, 240)]
    ms = [table.query_op(Op(b, 28, 40)) for b in [base.layer] + bigger]
    assert ms == sorted(ms)
    # NetAdapt trims to any multiple of 8: such an op is not in the table but is predicted, marked model
    trimmed = arch.blocks[10].__class__("ir", 80, 112, 456, 3, 1, "hswish", arch.blocks[10].se, False)
    op = Op(trimmed, 14, 80)
    assert op.key not in table
    assert table.query_op(op) > 0 and table.df.set_index("key").loc[op.key, "source"] == "model"
    layers = table.per_layer(arch)
    assert list(layers["layer"][-2:]) == ["head", "network"]
    assert layers["ms"].sum() == pytest.approx(table.query_total(arch))


def test_pixel_fit_leave_one_out():
    need_shared()
    from latency_tables.pixel import fit_pixel

    model, report = fit_pixel(PIXEL_YAML, sorted((SHARED / "ofa_note10").glob("*.yaml")))
    assert len(report["loo_rel_err"]) == 72
    assert 0 < np.abs(report["loo_rel_err"]).mean() < 0.15
    # h-swish and SE make a block slower, by a relative cost taken from Note10
    plain = Op(Block("ir", 40, 40, 120, 5, 1, "relu", None, True), 28, 40)
    fancy = Op(Block("ir", 40, 40, 120, 5, 1, "hswish", reference("mobilenet_v3_large").blocks[4].se, True), 28, 40)
    assert model.predict([fancy])[0] > model.predict([plain])[0]


@pytest.mark.parametrize("space_name", ["mnv3", "mnv3_small"])
def test_predict_many_vectorized_matches_query_total(space_name):
    table = load_target("pixel_cpu")
    space = get_space(space_name)
    rng = random.Random(1)
    vectors = [space.sample(rng) for _ in range(20)]
    fast = table.predict_many(np.array(vectors), space=space)
    slow = table.predict_many([space.decode(v) for v in vectors])
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    with pytest.raises(UserError, match="decision vectors"):
        table.predict_many(np.zeros((2, 3), int), space=space)


# ---- published tables --------------------------------------------------------------
def test_import_proxylessnas_pixel1():
    need_shared()
    from latency_tables.published import import_tables

    table = import_tables([PIXEL_YAML], "proxylessnas")
    assert len(table) == 71  # 72 entries, the final conv and the classifier form one IR head op
    assert table.metadata["statistic"] == "mean_ms" and table.metadata["resolution"] == 224
    assert table.query_op("stem:c32_k3_s2_relu6@r224_x3") == pytest.approx(4.083755600814664)
    head = table.query_op("head:mnv2_c1280_relu6@r7_x320_n1000")
    assert head == pytest.approx(3.088623217922607 + 0.3096415478615071)
    # an IR arch made of published ops can be queried; one that is not names its missing op
    stem_only = Arch.from_string("r224_n1000|stem:c32_k3_s2_relu6|ir:i32_o16_m32_k3_s1_relu6|"
                                 "ir:i16_o24_m48_k3_s2_relu6|head:mnv2_c1280_relu6")
    with pytest.raises(UserError, match="head:mnv2_c1280_relu6@r56_x24_n1000"):
        table.query_total(stem_only)


def test_import_ofa_note10(tmp_path):
    need_shared()
    from latency_tables.published import import_tables

    files = sorted((SHARED / "ofa_note10").glob("*.yaml"))
    table = import_tables(files, "ofa")
    assert table.metadata["resolutions"] == [160, 176, 192, 208, 224]
    assert set(table.df["kind"]) == {"stem", "block", "head"}
    blocks = [parse_key(k).layer for k in table.df["key"] if k.startswith("ir:")]
    assert any(b.se for b in blocks) and any(b.act == "hswish" for b in blocks)
    back = LatencyTable.load(table.save(tmp_path / "ofa.csv"))
    assert len(back) == len(table) and math.isnan(back.df["median_ms"][0])
