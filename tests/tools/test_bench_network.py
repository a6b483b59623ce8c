import pytest


@pytest.mark.slow
def test_bench_network_runs_tiny(tool, capsys):
    module = tool("bench_network")
    assert module.main(["--units", "standardlstm", "--layers", "1", "--n-out", "4", "--n-in", "3", "--classes", "5",
                        "--batch", "2", "--time", "5", "--steps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[0] == "standardlstm" and float(lines[-1].split()[2]) > 0


def test_bench_network_dict_is_blstm(tool):
    net = tool("bench_network").blstm_net_dict("lstm", layers=2, n_out=8)
    assert net["lstm1_bw"] == {"class": "rec", "unit": "lstm", "n_out": 8, "direction": -1,
                               "from": ["lstm0_fw", "lstm0_bw"], "dropout": 0.1}
    assert net["output"]["from"] == ["lstm1_fw", "lstm1_bw"]
