"""The README's quick-start config runs as written (one epoch)."""

import os
import re

from returnn.__main__ import main

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst")


def test_readme_quick_start_config_trains(tmp_path, monkeypatch):
    text = open(README, encoding="utf-8").read()
    block = re.search(r"Quick start\n-+\n\n\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text).group(1)
    config = tmp_path / "setup.config"
    config.write_text("\n".join(line[4:] for line in block.splitlines()) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main([str(config), "++num_epochs", "1", "++log_verbosity", "2"]) == 0
    assert os.path.exists(tmp_path / "out" / "net.001.index")
