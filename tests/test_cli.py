"""The qwen-edge console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from edge_server import _engine
from edge_server.cli import main


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["isa"] in facts["supported_isas"]
    assert facts["best_isa"] == _engine.best_isa()
    assert "version=" in facts["build"] and facts["threads"] >= 1


def test_info_console_script_honours_eng_isa(tmp_path):
    env = dict(os.environ, ENG_ISA="scalar")
    out = subprocess.run(
        [sys.executable, "-m", "edge_server", "info", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["isa"] == "scalar"
