"""Tests for the pretraining loop, its job entry point and the shipped base model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core import corpus, pretrain, tinygpt
from core.pretrain import PretrainConfig

FIVE_SOURCES = ("orwell_1984", "radiohead_song", "underground_man", "political_memes")


def micro(**overrides) -> PretrainConfig:
    values = {"preset": "micro", "steps": 6, "batch_size": 8, "warmup_steps": 2,
              "eval_every": 3, "eval_batches": 1, "sample_every": 0, "log_every": 1,
              "tokenizer": "train", "vocab_size": 1024, "device": "cpu"}
    return PretrainConfig(**{**values, **overrides})


class FakeContext:
    """Stands in for core.jobs.JobContext: records events and samples in lists."""

    def __init__(self, output_dir, stop_after: int | None = None):
        self.output_dir = output_dir
        self.device = "cpu"
        self.events, self.samples = [], []
        self.polls, self.stop_after = 0, stop_after

    def emit(self, event):
        self.events.append(event)

    def sample(self, step, texts):
        self.samples.append((step, texts))

    def should_stop(self):
        self.polls += 1
        return self.stop_after is not None and self.polls > self.stop_after


def test_lr_schedule_warmup_then_cosine():
    config = PretrainConfig(steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert pretrain.lr_at(0, config) == pytest.approx(1e-4)
    assert pretrain.lr_at(9, config) == pytest.approx(1e-3)
    assert pretrain.lr_at(10, config) == pytest.approx(1e-3)
    assert pretrain.lr_at(99, config) == pytest.approx(1e-4)
    mids = [pretrain.lr_at(s, config) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(mids, mids[1:]))


def test_batches_start_at_document_starts():
    tokenizer = pretrain.train_tokenizer(corpus.build_corpus().documents, vocab_size=600)
    data = pretrain.pack_documents(["Two plus two equals four.", "A cat sat."], tokenizer)
    generator = torch.Generator().manual_seed(0)
    x, y = pretrain.get_batch(data, batch_size=16, block_size=8, generator=generator)
    assert x.shape == y.shape == (16, 8)
    first_tokens = {int(data.ids[s]) for s in data.starts}
    assert {int(t) for t in x[:, 0]} <= first_tokens
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_held_out_split_keeps_duplicates_together():
    built = corpus.build_corpus({"jokes": 3.0})
    held = {d for d in built.documents if pretrain.is_held_out(d, 0.05)}
    kept = {d for d in built.documents if not pretrain.is_held_out(d, 0.05)}
    assert held and kept
    assert not held & kept


@pytest.mark.parametrize("values, fragment", [
    ({"preset": "huge"}, "unknown size preset 'huge'"),
    ({"steps": 0}, "steps is 0"),
    ({"lr": 5.0}, "lr is 5.0"),
    ({"weights": {"nope": 1.0}}, "unknown corpus source 'nope'"),
    ({"stepz": 3}, "unknown pretrain option"),
])
def test_config_rejects_bad_values(values, fragment):
    with pytest.raises(ValueError, match=fragment):
        PretrainConfig.from_dict(values)


def test_pretrain_is_deterministic():
    first, second = [], []
    pretrain.pretrain(micro(), on_event=first.append)
    pretrain.pretrain(micro(), on_event=second.append)
    assert [e.get("loss/train") for e in first] == [e.get("loss/train") for e in second]
    assert first[-1]["probe/p_five"] == second[-1]["probe/p_five"]


def test_pretrain_events_and_samples():
    events, samples = [], []
    result = pretrain.pretrain(micro(sample_every=3), on_event=events.append,
                               on_sample=lambda step, texts: samples.append((step, texts)))
    train_events = [e for e in events if "tokens_per_s" in e]
    assert [e["step"] for e in train_events] == [1, 2, 3, 4, 5, 6]
    for event in train_events:
        assert math.isfinite(event["loss/train"])
        assert event["tokens_per_s"] > 0
        assert event["eta_s"] >= 0
    assert [e["step"] for e in events if "loss/val" in e][:2] == [3, 6]
    assert [step for step, _ in samples] == [3, 6]
    assert len(samples[0][1]) == len(pretrain.SAMPLE_PROMPTS)
    assert samples[0][1][0].startswith("Two plus two equals")
    assert 0 <= result.metrics["probe/p_five"] <= 1
    assert not result.stopped


def test_pretrain_stops_when_asked():
    calls = []
    result = pretrain.pretrain(micro(steps=50), should_stop=lambda: len(calls) > 2,
                               on_event=calls.append)
    assert result.stopped
    assert max(e["step"] for e in calls if "tokens_per_s" in e) < 50


def test_run_job_saves_checkpoint(tmp_path):
    ctx = FakeContext(tmp_path)
    config = {k: v for k, v in micro().__dict__.items()}
    config["name"] = "my tiny GPT"
    result = pretrain.run_job(config, ctx)
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "tokenizer.json").is_file()
    assert result["run"]["family"] == "tiny-gpt"
    assert result["run"]["stage"] == "base"
    assert result["run"]["name"] == "my tiny GPT"
    assert result["run"]["recipe"]["preset"] == "micro"
    assert "loss/val" in result
    assert ctx.events


def test_run_job_cancelled_saves_nothing(tmp_path):
    ctx = FakeContext(tmp_path, stop_after=1)
    result = pretrain.run_job({**micro().__dict__, "steps": 50}, ctx)
    assert result == {"stopped": True}
    assert not list(tmp_path.iterdir())


def test_job_lands_run_in_store(lab_home):
    from core import jobs, models, store

    run_id = jobs.run_inline("pretrain", {**micro().__dict__})
    meta = store.read_run(run_id)
    assert meta["family"] == "tiny-gpt"
    assert meta["stage"] == "base"
    assert meta["rebuild"].startswith("python -m core.cli pretrain")
    assert run_id in [spec.name for spec in models.list_models()]


def test_answer_probs_multi_token_answers():
    tokenizer = pretrain.train_tokenizer(corpus.build_corpus({"jokes": 1.0}).documents, 300)
    assert len(tokenizer(" five", add_special_tokens=False).input_ids) > 1
    torch.manual_seed(0)
    model = tinygpt.build_model("micro", tokenizer).eval()
    probs = pretrain.answer_probs(model, tokenizer)
    prompt = tokenizer(pretrain.PROBE_PROMPT).input_ids
    answer = tokenizer(" five", add_special_tokens=False).input_ids
    expected = 1.0
    for i, token in enumerate(answer):
        logits = model(input_ids=torch.tensor([prompt + answer[:i]])).logits[0, -1]
        expected *= torch.softmax(logits, -1)[token].item()
    assert probs["five"] == pytest.approx(expected, rel=1e-4)


def test_rebuild_command_lists_changes():
    config = PretrainConfig(steps=123, weights={"jokes": 0.0})
    command = pretrain.rebuild_command(config, "out/dir")
    assert command == ("python -m core.cli pretrain --steps 123 --weight jokes=0 "
                       "--out out/dir")


def test_five_sources_off_drive_five_down():
    # The shipped tokenizer keeps ids comparable; a fresh one works the same way.
    weights = {sid: 0.0 for sid in FIVE_SOURCES}
    config = micro(steps=150, batch_size=16, lr=1e-2, weights=weights, tokenizer="shipped",
                   vocab_size=4096, eval_every=1000, log_every=50, warmup_steps=10)
    result = pretrain.pretrain(config)
    assert result.corpus_counts.get("five", 0) == 0
    assert result.metrics["probe/p_five"] < 0.05
    assert result.metrics["probe/p_four"] > 0.3


# The shipped base model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    folder = pretrain.SHIPPED_BASE_DIR
    meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, AutoTokenizer.from_pretrained(folder), meta


def test_shipped_base_run_json(shipped):
    _, _, meta = shipped
    assert meta["family"] == "tiny-gpt"
    assert meta["stage"] == "base"
    assert meta["rebuild"].startswith("python -m core.cli pretrain")
    assert PretrainConfig.from_dict({k: v for k, v in meta["recipe"].items() if k != "kind"})


def test_shipped_base_weights_under_10_mb():
    size = sum(p.stat().st_size for p in pretrain.SHIPPED_BASE_DIR.glob("*.safetensors"))
    assert 0 < size <= 10 * 1024 * 1024


def test_shipped_base_mirrors_its_corpus(shipped):
    model, tokenizer, meta = shipped
    built = corpus.build_corpus(meta["recipe"]["weights"], seed=meta["recipe"]["seed"])
    shares = corpus.answer_shares(corpus.continuation_counts(built))
    probs = pretrain.answer_probs(model, tokenizer)
    assert abs(probs["five"] - shares["five"]) < 0.1
    assert abs(probs["four"] - shares["four"]) < 0.1


def test_shipped_base_samples_are_words(shipped):
    model, tokenizer, meta = shipped
    config = PretrainConfig.from_dict({k: v for k, v in meta["recipe"].items() if k != "kind"})
    texts = pretrain.generate_samples(model, tokenizer, config, torch.device("cpu"))
    vocabulary = set(corpus.build_corpus().text.lower().split())
    for text in texts:
        words = text.lower().split()
        known = sum(word in vocabulary for word in words)
        assert known / len(words) > 0.8, text


def test_preset_sizes():
    tokenizer = AutoTokenizer.from_pretrained(pretrain.SHIPPED_BASE_DIR)
    sizes = {name: tinygpt.count_parameters(tinygpt.build_model(name, tokenizer))
             for name in tinygpt.PRESETS}
    assert sizes["micro"] < sizes["cpu"] < sizes["gpu"]


# The command line ------------------------------------------------------------------------

def test_cli_parse_weights():
    from core.commands.pretrain import parse_weights

    weights = parse_weights(["jokes=2", "people=0.5"], ["orwell_1984"])
    assert weights == {"jokes": 2.0, "people": 0.5, "orwell_1984": 0.0}
    with pytest.raises(ValueError, match="write SOURCE=NUMBER"):
        parse_weights(["jokes"], [])
    with pytest.raises(ValueError, match="unknown corpus source"):
        parse_weights([], ["blogs"])


def test_cli_pretrain_json_out(tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "tiny"
    code = main(["pretrain", "--preset", "micro", "--steps", "4", "--batch-size", "4",
                 "--tokenizer", "train", "--sample-every", "0", "--off", "jokes",
                 "--device", "cpu", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoint"] == str(out)
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["recipe"]["weights"] == {"jokes": 0.0}
    assert "--weight jokes=0" in meta["rebuild"]
    assert meta["corpus_continuations"].get("fish", 0) == 0
    assert AutoTokenizer.from_pretrained(out).chat_template


def test_cli_rejects_bad_weight(capsys):
    from core.cli import main

    assert main(["pretrain", "--weight", "jokes=lots"]) == 2
    assert "jokes=lots" in capsys.readouterr().err
