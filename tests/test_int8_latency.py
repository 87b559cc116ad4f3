"""8-bit latency tables: quantized op models that run and are timed, the precision in the
table's header and resume check, the local_cpu_int8 target, and the CLI's --precision.

Everything runs at 32 pixels on the ops of one small architecture (never the full table).
"""
import random

import pytest

from latency_tables import LatencyTable, arch_ops, load_target
from latency_tables.build import build_table, measure_ops
from latency_tables.measure import Budget, OnnxRuntimeRunner
from latency_tables.ops import Op, op_onnx
from latency_tables.quantize import graph_report, integer_hard_activations, quantize
from latency_tables.targets import local_cpu_path
from search_spaces.errors import UserError
from search_spaces.ir import SE, Block
from search_spaces.space import get_space

FAST = Budget(warmup=1, min_rounds=2, max_rounds=2, max_seconds=0.01)  # two timed runs: no timing claims
SPACE = get_space("mnv3")
SE_HSWISH = Op(Block("ir", 16, 24, 64, 3, 1, "hswish", SE(16, "hsigmoid")), 16, 16)


def small_ops(n=6):
    arch = SPACE.decode(SPACE.sample(random.Random(5))).replace(resolution=32)
    return list(dict.fromkeys(op for _, op in arch_ops(arch)))[:n]


def test_a_quantized_op_has_integer_kernels_and_is_timed():
    model = quantize(op_onnx(SE_HSWISH))
    types = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= types
    report = graph_report(model)
    # the convolutions (expand, depthwise, project, both SE convs) and the SE's pool run on integers
    assert report["int8"]["QLinearConv"] == 5 and report["int8"]["QLinearGlobalAveragePool"] == 1
    # so do h-swish (twice) and the SE's hard-sigmoid gate: Mul, Add, (Clip folded), Mul; and the SE's scaling
    assert report["int8"]["QLinearAdd"] == 3 and report["int8"]["QLinearMul"] == 2 * 2 + 1 + 1
    assert not report["float"] and sum(report["conversion"].values()) == 2  # one Q in, one DQ out
    # left float, they run between a DequantizeLinear and a QuantizeLinear each
    assert set(graph_report(quantize(op_onnx(SE_HSWISH), integer_hard=False))["float"]) >= {"HardSigmoid"}

    class Seen(OnnxRuntimeRunner):
        def session(self, model):
            self.seen = {n.op_type for n in model.graph.node}
            return super().session(model)

    runner = Seen(1, FAST, precision="int8")
    (row,) = measure_ops([SE_HSWISH], runner)
    assert "QuantizeLinear" in runner.seen  # the runner timed the quantized model, not the float one
    assert row["source"] == "measured" and row["count"] == 2 and row["median_ms"] > 0


def test_hard_activations_rewritten_compute_the_same():
    import numpy as np
    import onnxruntime as ort

    model = op_onnx(SE_HSWISH)
    rewritten = integer_hard_activations(model)
    assert {"HardSwish", "HardSigmoid"} & {n.op_type for n in model.graph.node}
    assert not {"HardSwish", "HardSigmoid"} & {n.op_type for n in rewritten.graph.node}
    x = {"input": np.random.default_rng(0).normal(0, 3, (1, 16, 16, 16)).astype(np.float32)}
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.testing.assert_allclose(run(rewritten), run(model), rtol=1e-5, atol=1e-5)


def test_an_int8_table_says_int8_and_refuses_to_resume_as_fp32(tmp_path):
    out = tmp_path / "t.csv"
    ops = small_ops()
    table = build_table(SPACE, "local_cpu", out, OnnxRuntimeRunner(1, FAST, precision="int8"), resolution=32,
                        ops=ops, calibrate=0, progress=False)
    assert table.precision == "int8"
    header = out.read_text().splitlines()[0]
    assert '"precision": "int8"' in header
    assert LatencyTable.load(out).precision == "int8" and len(LatencyTable.load(out)) == len(ops)
    with pytest.raises(UserError, match="precision 'int8' vs 'fp32'"):
        build_table(SPACE, "local_cpu", out, OnnxRuntimeRunner(1, FAST), resolution=32, ops=ops, calibrate=0,
                    progress=False)


def test_a_table_without_precision_is_float_and_a_bad_one_is_refused(tmp_path):
    out = tmp_path / "t.csv"
    build_table(SPACE, "local_cpu", out, OnnxRuntimeRunner(1, FAST), resolution=32, ops=small_ops(2),
                calibrate=0, progress=False)
    text = out.read_text()
    assert '"precision": "fp32"' in text
    out.write_text(text.replace('"precision": "fp32", ', ""))
    assert LatencyTable.load(out).precision == "fp32"  # written before precisions existed
    out.write_text(text.replace('"precision": "fp32"', '"precision": "int4"'))
    with pytest.raises(UserError, match="precision 'int4'"):
        LatencyTable.load(out)


def test_local_cpu_int8_is_its_own_cached_table(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert local_cpu_path(1, "int8") != local_cpu_path(1) and local_cpu_path(1, "int8").name == "local_cpu_int8_t1.csv"
    int8 = load_target("local_cpu_int8")
    assert int8.precision == "int8" and int8.missing.precision == "int8"
    op = small_ops(1)[0]
    assert int8.query_op(op) > 0  # measured quantized on first use, written back to the int8 cache
    assert op.key in LatencyTable.load(local_cpu_path(1, "int8"))
    assert load_target("local_cpu").precision == "fp32" and op.key not in load_target("local_cpu")


def test_precision_flag(capsys, tmp_path):
    from nas.cli import main

    assert main(["latency", "build", "--device", "local_cpu", "--precision", "int4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas: error: argument --precision: invalid choice: 'int4'") and "\n" not in err


def test_validate_times_networks_in_the_tables_precision(tmp_path, monkeypatch, capsys):
    import latency_tables.validate
    from nas.cli import main

    out = tmp_path / "t.csv"
    build_table(SPACE, "local_cpu", out, OnnxRuntimeRunner(1, FAST, precision="int8"), resolution=32,
                ops=small_ops(1), calibrate=0, progress=False)
    seen = {}

    def fake(table, space, runner, samples, seed, out):
        seen["precision"] = runner.precision
        return {"n": 2, "rmse_ms": 0.0, "rmspe_pct": 0.0, "within_5pct": 1.0, "within_10pct": 1.0,
                "kendall_tau": 1.0}, None

    monkeypatch.setattr(latency_tables.validate, "validate_table", fake)
    assert main(["latency", "validate", "--table", str(out), "--samples", "2"]) == 0
    assert seen["precision"] == "int8"


def test_local_cpu_int8_is_a_builtin_target_name():
    from nas.run_config import absolute_target

    assert absolute_target("local_cpu_int8") == "local_cpu_int8"  # not taken for a table file's path
