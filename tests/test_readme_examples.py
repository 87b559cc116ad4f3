"""The README's "Python API" examples, run as written, so the README cannot drift from the code.

Only their cost is changed: every call of `nas.search`, `nas.refine` and `nas.build_table` gets the
README's own arguments plus `TINY`'s (a couple of candidates scored from the IR and none trained after
the search, a step of fine-tuning, a few calibration networks), and the examples run in a temporary
directory."""
import re
from pathlib import Path

import pytest

import nas

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {"search": dict(trials=2, evaluator="zc:params", final_top=0, epochs=0.2, batch_size=16, resolution=16,
                       progress=False),
        "refine": dict(step_ratio=0.1, short_term_steps=1, long_term_epochs=0.1, threads=1, progress=False),
        "build_table": dict(calibrate=10, progress=False)}


def examples() -> list[str]:
    """The ```python blocks of the README's "Python API" section."""
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_python_api_section_has_its_two_examples():
    found = examples()
    assert len(found) == 2 and "data=my_dataset" in found[0] and "nas.build_table(" in found[1]


@pytest.mark.parametrize("index", [0, 1])
def test_a_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, extra in TINY.items():
        real = getattr(nas, name)
        monkeypatch.setattr(nas, name,
                            lambda *args, _real=real, _extra=extra, **kwargs: _real(*args, **kwargs | _extra))
    exec(compile(examples()[index], f"README.md, Python API example {index + 1}", "exec"), {"__name__": "readme"})
    if index == 0:
        assert (tmp_path / "mine.onnx").stat().st_size > 0 and (tmp_path / "runs" / "mine" / "data.npz").is_file()
    else:
        assert nas.Run.load(tmp_path / "runs" / "this_cpu").config.target == str(tmp_path / "this_cpu.csv")
