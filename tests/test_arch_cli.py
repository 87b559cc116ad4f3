"""`nas arch ...`: output of each command, and exit status 2 with one line for bad input."""
import json

import onnxruntime as ort
import pytest

from nas.cli import main
from search_spaces.ir import Arch


def test_stats_json(capsys):
    assert main(["arch", "stats", "mobilenet_v3_large", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"params": 5483032, "macs": 216589760}


def test_show_table(capsys):
    assert main(["arch", "show", "mobilenet_v3_small"]) == 0
    out = capsys.readouterr().out
    assert "stem" in out and "block10" in out and "head" in out and "2,542,856" in out
    assert "16x112x112" in out


def test_sample_prints_parseable_strings(capsys):
    assert main(["arch", "sample", "--space", "mnv3_small", "--n", "3", "--seed", "5"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 3 and len(set(lines)) == 3
    for line in lines:
        Arch.from_string(line)
    main(["arch", "sample", "--space", "mnv3_small", "--n", "3", "--seed", "5"])
    assert capsys.readouterr().out.split() == lines


def test_export_and_arch_forms(tmp_path, capsys):
    arch_file = tmp_path / "a.json"
    main(["arch", "sample", "--n", "1"])
    arch = Arch.from_string(capsys.readouterr().out.strip())
    arch_file.write_text(arch.to_json())
    for spec in (str(arch_file), arch.to_string()):
        out = tmp_path / "m.onnx"
        assert main(["arch", "export", spec, "--onnx", str(out)]) == 0
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape == [1, 3, 224, 224]


@pytest.mark.parametrize("argv, reason", [
    (["arch", "stats", "mobilenet_v7"], "unknown architecture"),
    (["arch", "show", "r224_n1000|stem:c16_k3_s2_hswish|ir:i8_o16_m16_k3_s1_relu|head:mnv3_c960_f1280_hswish"],
     "block 0: field 'in'"),
    (["arch", "sample", "--space", "mnv9"], "unknown search space"),
    (["arch", "sample", "--n", "0"], "--n"),
    (["arch", "sample", "--n", "many"], "invalid int"),
    (["arch", "bogus"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(argv, reason, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert reason in err and len(err.splitlines()) == 1 and "Traceback" not in err
