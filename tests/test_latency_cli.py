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


@pytest.mark.parametrize("argv,message", [
    (["latency", "predict", "--target", "pixel_phone", "mobilenet_v2"], "unknown latency target 'pixel_phone'"),
    (["latency", "predict", "--target", "pixel_cpu", "mobilenet_v9"], "unknown architecture"),
    (["latency", "predict", "--target", "pixel_cpu",
      reference("mobilenet_v2").replace(resolution=192).to_string()], "224x224 inputs"),
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
