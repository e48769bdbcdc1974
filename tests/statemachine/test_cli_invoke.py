"""`modelgate invoke`: one handler with a sample event, on an embedded AWS of its own.

Apart from test_cli.py, whose tests share one stack: the command deploys the template itself,
and a process runs one embedded AWS at a time (a second stack's tables would collide).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelgate_harness import cli

ROOT = Path(__file__).resolve().parents[2]


def test_invoke_runs_one_handler_with_a_sample_event(capsys):
    code = cli.main(["invoke", "functions/inference",
                     "-e", str(ROOT / "events" / "inference" / "question.json"),
                     "-t", str(ROOT / "template.yaml"), "--parameter", "ModelProvider=local"])
    payload = json.loads(capsys.readouterr().out)
    # the stack's first version pins no release: it answers from its bootstrap configuration (template.yaml)
    assert code == 0 and "Reset password" in payload["output"], payload
    assert payload["release"]["config_version"] == "bootstrap"


def test_invoke_names_the_functions_when_one_is_unknown(capsys):
    with pytest.raises(SystemExit, match="no function 'nope'.*ValidateFunction"):
        cli.main(["invoke", "nope", "-e", str(ROOT / "events" / "inference" / "question.json"),
                  "-t", str(ROOT / "template.yaml")])
