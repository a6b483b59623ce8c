import pytest


@pytest.mark.slow
def test_benchmark_network_runs_tiny(tool, capsys):
    module = tool("benchmark_network")
    assert module.main(["--units", "standardlstm", "--layers", "1", "--n-out", "4", "--n-in", "3", "--classes", "5",
                        "--batch", "2", "--time", "5", "--steps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[0] == "standardlstm" and float(lines[-1].split()[2]) > 0

