"""`make demo` runs and says what it ran."""

from adatok.demo import main


def test_demo_runs_and_is_honest(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RANDOMLY INITIALISED titok_tiny" in out and "no trained weights ship yet" in out
    assert "decode(tokens) == decode_ids(ids): True" in out and "same ids: True" in out
    assert (tmp_path / "reconstructions.png").exists()
