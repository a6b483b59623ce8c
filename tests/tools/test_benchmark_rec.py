def test_benchmark_rec_prints_variants_ratio_and_frames_per_sec(tool, capsys):
    module = tool("benchmark_rec")
    assert module.main(["--enc-layers", "1", "--n-out", "8", "--batch", "3", "--in-time", "6", "--out-time", "4",
                        "--classes", "5", "--n-in", "3", "--steps", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("attention, optimizer off") for line in lines)
    assert any("no loop (by hand)" in line for line in lines)
    assert "rec unit dict / by hand time" in lines[-3]
    assert lines[-1].startswith("frames_per_sec=") and float(lines[-1].split("=")[1]) > 0
