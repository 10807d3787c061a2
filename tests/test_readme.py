"""The README's Python snippet runs as written, and its model table names every preset."""

import re
from pathlib import Path

import adatok

README = Path(__file__).parents[1] / "README.md"


def test_python_snippet_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    snippet = blocks[0]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "128 512" in out and "torch.Size([2, 8])" in out
    alit = next(b for b in blocks if "alit_test_tiny" in b)  # continues the first snippet
    exec(compile(alit, "README.md", "exec"), namespace)
    assert "4 torch.Size([2, 3, 64, 64])" in capsys.readouterr().out
    assert (tmp_path / "my_tokenizer" / "model.safetensors").exists()


def test_model_table_lists_every_preset():
    text = README.read_text()
    for name in adatok.list_models():
        assert f"| `{name}` |" in text, name
