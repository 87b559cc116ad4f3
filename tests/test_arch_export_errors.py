"""`nas arch export --onnx` at a place it cannot write: one line, status 2."""
from nas.cli import main


def test_export_to_a_directory_or_an_unwritable_place(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for target, reason in ((tmp_path, "is a directory"), (tmp_path / "file" / "x.onnx", "cannot write"),
                           ("/proc/x.onnx", "cannot write")):
        assert main(["arch", "export", "mobilenet_v3_small", "--onnx", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert reason in err and len(err.splitlines()) == 1
