import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import cli

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_models_json_lists_runs(tiny_lab, capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in rows if r["name"].startswith("tiny-test")) == sorted(tiny_lab)


def test_probs_json_matches_core(tiny_lab, capsys):
    from core import inference, models

    assert cli.main(["probs", tiny_lab[0], "Two plus two equals", "--top", "3", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    expected = inference.next_token_distribution(models.load_model(tiny_lab[0]),
                                                 "Two plus two equals", top_k=3)
    assert [t["token_id"] for t in output["top"]] == [t.token_id for t in expected.top]
    assert [c["text"] for c in output["candidates"]] == [" four", " five", " fish"]


def test_generate_json_two_models(tiny_lab, capsys):
    models_arg = ",".join(tiny_lab[:2])
    assert cli.main(["generate", models_arg, "The cat", "-n", "2", "--max-new-tokens", "5",
                     "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [g["model"] for g in output] == [tiny_lab[0]] * 2 + [tiny_lab[1]] * 2


def test_unknown_model_exit_code(tiny_lab):
    result = _run("probs", "no-such-model", "Two plus two equals", env=dict(os.environ))
    assert result.returncode == 2
    assert "Unknown model 'no-such-model'" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_temperature_message(tiny_lab, capsys):
    assert cli.main(["generate", tiny_lab[0], "Hi", "--temperature", "0"]) == 2
    assert "temperature=0.0 is invalid" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["probs", "generate"])
def test_empty_model_list_rejected(tiny_lab, command, capsys):
    assert cli.main([command, " , ", "Two plus two equals", "--json"]) == 2
    error = capsys.readouterr().err
    assert "No model name in ' , '" in error


def test_probs_several_models_in_order(tiny_lab, capsys):
    names = [tiny_lab[2], tiny_lab[0]]
    assert cli.main(["probs", ",".join(names), "Two plus two equals", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [item["model"] for item in output] == names


@pytest.mark.parametrize("command", ["models", "probs", "generate"])
def test_help_mentions_json(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "--json" in capsys.readouterr().out
