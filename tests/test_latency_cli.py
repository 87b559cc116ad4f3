"""`nas latency ...`: outputs and one-line errors with exit status 2 for bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from search_spaces.references import reference

SHARED = Path(__file__).resolve().parents[2] / "shared" / "latency_data"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_and_breakdown(capsys):
    code, out, _ = run(capsys, "latency", "predict", "--target", "pixel_cpu", "mobilenet_v2", "--json")
    assert code == 0 and 60 < json.loads(out)["latency_ms"] < 90
    code, out, _ = run(capsys, "latency", "predict", "--target", "pixel_cpu", reference("mobilenet_v3_large").to_string())
    assert code == 0 and "block14" in out and "network" in out and "total:" in out


def test_a_modelled_table_predicts_other_resolutions(capsys):
    """pixel_cpu's rows are a per-op model's estimates: it answers at 192 px (and at 32 px for
    nasbench_macro) with its scale-only end-to-end term, less than at 224 px."""
    code, out, _ = run(capsys, "latency", "predict", "--target", "pixel_cpu",
                       reference("mobilenet_v2").replace(resolution=192).to_string(), "--json")
    at_192 = json.loads(out)["latency_ms"]
    _, out, _ = run(capsys, "latency", "predict", "--target", "pixel_cpu", "mobilenet_v2", "--json")
    assert code == 0 and 0 < at_192 < json.loads(out)["latency_ms"]


@pytest.mark.parametrize("argv,message", [
    (["latency", "predict", "--target", "pixel_phone", "mobilenet_v2"], "unknown latency target 'pixel_phone'"),
    (["latency", "predict", "--target", "pixel_cpu", "mobilenet_v9"], "unknown architecture"),
    (["latency", "build", "--device", "x", "--space", "mnv4"], "unknown search space"),
    (["latency", "build", "--device", "x", "--threads", "0", "--out", "/nonexistent/t.csv"], "at least 1"),
    (["latency", "build", "--device", "x", "--runner", "command"], "needs --command"),
    (["latency", "validate", "--table", "pixel_cpu", "--samples", "3"], "not measured on this machine"),
    (["latency", "import", "--format", "ofa", "/nonexistent.yaml", "--out", "t.csv"], "no such file"),
    (["latency", "import", "--format", "tflite", "x.yaml", "--out", "t.csv"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_corrupt_table_file(tmp_path, capsys):
    bad = tmp_path / "t.csv"
    bad.write_text("# nas-latency-table {}\nkey\n")
    code, _, err = run(capsys, "latency", "predict", "--target", str(bad), "mobilenet_v2")
    assert code == 2 and "metadata lacks" in err and err.count("\n") == 1
    notyaml = tmp_path / "x.yaml"
    notyaml.write_text("just: [a, list\n")
    code, _, err = run(capsys, "latency", "import", "--format", "ofa", str(notyaml), "--out", str(bad))
    assert code == 2 and "not a readable YAML" in err


def test_infinite_latency_is_refused_not_printed(tmp_path, capsys):
    from latency_tables.pixel import TABLE_FILE

    meta, columns, first, *rest = Path(TABLE_FILE).read_text().splitlines()
    row = ["inf" if name == "median_ms" else v for name, v in zip(columns.split(","), first.split(","))]
    bad = tmp_path / "t.csv"
    bad.write_text("\n".join([meta, columns, ",".join(row), *rest]) + "\n")
    code, out, err = run(capsys, "latency", "predict", "--target", str(bad), "mobilenet_v3_large", "--json")
    assert code == 2 and out == "" and "has an infinite value (row 1)" in err and err.count("\n") == 1


def test_import_then_predict_through_the_cli(tmp_path, capsys):
    yaml_file = SHARED / "proxylessnas_pixel1" / "mobile_trim.yaml"
    if not yaml_file.exists():
        pytest.skip(f"published latency data not found at {SHARED}")
    out = tmp_path / "pixel1.csv"
    code, text, _ = run(capsys, "latency", "import", "--format", "proxylessnas", str(yaml_file), "--out", str(out))
    assert code == 0 and "71 ops" in text
    arch = ("r224_n1000|stem:c32_k3_s2_relu6|ir:i32_o16_m32_k3_s1_relu6|ir:i16_o24_m48_k3_s2_relu6|"
            "ir:i24_o24_m72_k3_s1_relu6_r|head:mnv2_c1280_relu6")
    code, _, err = run(capsys, "latency", "predict", "--target", str(out), arch)
    assert code == 2 and "is not in the latency table" in err


def test_entry_point_exit_status():
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "latency", "predict", "--target", "nope", "mobilenet_v2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("nas: error: unknown latency target")


def by_node_count(self, models):
    """No timing: a model takes 0.01 ms per graph node (as test_latency_measure's NodeCountRunner)."""
    return [[0.01 * len(m.graph.node)] * 3 for m in models]


def test_validate_another_space_calibrates_on_that_space(tmp_path, monkeypatch, capsys):
    """`--space X` on a table of another space: the networks timed, and those the table fits its
    end-to-end term on at first use, are X's (the term was fitted on the table's own space)."""
    import latency_tables.missing
    from latency_tables import LatencyTable
    from latency_tables.measure import OnnxRuntimeRunner
    from latency_tables.table import new_metadata

    monkeypatch.setattr(OnnxRuntimeRunner, "measure", by_node_count)
    calibrated, fit = [], latency_tables.missing.calibrate_table

    def on_few_networks(table, space, runner, networks, **kwargs):
        calibrated.append(space.name)
        return fit(table, space, runner, 8, **kwargs)

    monkeypatch.setattr(latency_tables.missing, "calibrate_table", on_few_networks)
    table = tmp_path / "t.csv"
    LatencyTable(None, new_metadata("local_cpu", "mnv3", 32, 1)).save(table)  # this machine's, empty, no term
    code, out, err = run(capsys, "latency", "validate", "--table", str(table), "--space", "mnv3_small",
                         "--samples", "2")
    assert code == 0 and out.startswith("2 networks, absolute: RMSE"), err
    assert calibrated == ["mnv3_small"] and "random mnv3_small networks once" in err


def test_validate_another_space_on_a_table_that_cannot_fill_its_ops_is_one_line(tmp_path, capsys):
    from latency_tables import LatencyTable, arch_ops
    from latency_tables.table import new_metadata, op_row
    from search_spaces.space import get_space

    arch = get_space("mnv3").decode(get_space("mnv3").sample(__import__("random").Random(0))).replace(resolution=32)
    stats = {"mean_ms": 1.0, "median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "std_ms": 0.0, "count": 1}
    rows = [op_row(op, stats, "measured") for op in dict.fromkeys(op for _, op in arch_ops(arch))]
    table = tmp_path / "phone.csv"  # measured elsewhere, no op model: it answers for its own ops only
    LatencyTable(rows, new_metadata("phone", "mnv3", 32, 1, runtime="tflite", cpu="arm", cores=8)).save(table)
    code, _, err = run(capsys, "latency", "validate", "--table", str(table), "--space", "mnv3_small", "--samples",
                       "2", "--runner", "command", "--command", "echo 1 {model}")
    assert code == 2 and err.count("\n") == 1 and "is not in the latency table of device 'phone'" in err
