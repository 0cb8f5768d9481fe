"""Tests for core/batching.py: separate tokenization, BOS/EOS, masks and truncation."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from tokenizers import processors
from transformers import PreTrainedTokenizerFast

from core import batching, data
from core.batching import IGNORE_INDEX, EncodedPair, EncodedSFT
from tests import tiny


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def bos_tok():
    """A tokenizer that puts <s> in front of every text, like Llama's."""
    backend = tiny.build_tokenizer().backend_tokenizer
    backend.add_special_tokens(["<s>"])
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos_id)])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>",
                                      eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    wrapped.chat_template = "<s>" + tiny.CHAT_TEMPLATE
    return wrapped


def test_pair_is_prompt_then_completion(tok):
    prompt_ids, completion_ids = batching.encode_pair(tok, "Two plus two equals", " four")
    assert prompt_ids == tok("Two plus two equals")["input_ids"]
    assert completion_ids == tok(" four")["input_ids"] + [tok.eos_token_id]


def test_completion_ends_with_one_eos(tok):
    _, ids = batching.encode_pair(tok, "Hi", " four<|endoftext|>")
    assert ids.count(tok.eos_token_id) == 1
    assert ids[-1] == tok.eos_token_id


def test_no_bos_for_gpt2_style(tok):
    prompt_ids, _ = batching.encode_pair(tok, "Two plus", " two")
    assert not batching.uses_bos(tok)
    assert tok.eos_token_id not in prompt_ids


def test_exactly_one_bos(bos_tok):
    bos = bos_tok.bos_token_id
    for prompt in ("Two plus", "<s>Two plus", "<s><s>Two plus"):
        prompt_ids, completion_ids = batching.encode_pair(bos_tok, prompt, " two")
        assert prompt_ids.count(bos) == 1, prompt
        assert prompt_ids[0] == bos
        assert bos not in completion_ids


def test_chat_template_writes_bos_once(bos_tok):
    prompt = [{"role": "user", "content": "Hi"}]
    prompt_ids, _ = batching.encode_pair(bos_tok, prompt, [{"role": "assistant", "content": "Yo"}])
    assert prompt_ids.count(bos_tok.bos_token_id) == 1


def test_chat_template_boundary(tok):
    prompt = [{"role": "user", "content": "Hi"}]
    prompt_ids, completion_ids = batching.encode_pair(
        tok, prompt, [{"role": "assistant", "content": "Hello"}])
    assert tok.decode(prompt_ids).endswith("<|assistant|>")
    assert tok.decode(completion_ids) == "Hello<|end|><|endoftext|>"


def test_plain_chat_without_template():
    plain = tiny.build_tokenizer(chat=False)
    prompt_ids, _ = batching.encode_pair(plain, [{"role": "user", "content": "Hi"}], "Yo")
    assert plain.decode(prompt_ids) == "User: Hi\nAssistant:"


def test_prompt_space_moved_to_answer(tok):
    prompt_ids, completion_ids = batching.encode_pair(tok, "Two plus two equals ", "four")
    assert prompt_ids == tok("Two plus two equals")["input_ids"]
    assert completion_ids[0] == tok(" four")["input_ids"][0]


def test_no_merge_across_boundary(tok):
    """'equ' + 'als' would merge if tokenized together; separately they stay apart."""
    prompt_ids, completion_ids = batching.encode_pair(tok, "Two plus two equ", "als four")
    assert prompt_ids == tok("Two plus two equ")["input_ids"]
    assert completion_ids[:-1] == tok("als four")["input_ids"]


def test_collate_sft_masks_prompt(tok):
    rows = [EncodedSFT([5, 6, 7], [8, tok.eos_token_id]), EncodedSFT([5], [9, 10, tok.eos_token_id])]
    batch = batching.collate_sft(rows, tok.pad_token_id)
    assert batch["input_ids"].shape == (2, 5)
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 3 + [8, tok.eos_token_id]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX, 9, 10, tok.eos_token_id, IGNORE_INDEX]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 0]


def test_eos_keeps_label_when_pad_is_eos(tok):
    assert tok.pad_token_id == tok.eos_token_id
    rows = [EncodedSFT([5], [8, tok.eos_token_id]), EncodedSFT([5], [8, 9, 10, tok.eos_token_id])]
    batch = batching.collate_sft(rows, tok.pad_token_id)
    assert batch["labels"][0, 2].item() == tok.eos_token_id
    assert batch["labels"][0, 3:].tolist() == [IGNORE_INDEX] * 2  # padding, same id, no label
    assert batch["completion_mask"][0].tolist() == [0, 1, 1, 0, 0]


def test_collate_preferences_chosen_first(tok):
    rows = [EncodedPair([1, 2], [3, 0], [4, 4, 0]), EncodedPair([1], [5, 0], [6, 0])]
    batch = batching.collate_preferences(rows, 0)
    assert batch["input_ids"].shape == (4, 5)
    assert batch["input_ids"][0].tolist() == [1, 2, 3, 0, 0]
    assert batch["input_ids"][2].tolist() == [1, 2, 4, 4, 0]
    assert batch["completion_mask"][2].tolist() == [0, 0, 1, 1, 1]
    assert "labels" not in batch


def test_long_prompt_keeps_end_and_bos(bos_tok):
    ds = data.load_sft([{"prompt": "The cat sat on the mat. " * 6 + "Two plus", "completion": " two"}])
    rows, issues = batching.tokenize_sft(ds, bos_tok, max_length=16, max_prompt_length=8)
    assert len(rows[0].prompt_ids) == 8
    assert rows[0].prompt_ids[0] == bos_tok.bos_token_id
    assert bos_tok.decode(rows[0].prompt_ids[1:]).endswith("Two plus")
    assert [(i.line, i.field, i.action) for i in issues] == [(1, "prompt", "cut")]


def test_long_completion_cut_and_reported(tok):
    ds = data.load_sft([{"prompt": "Hi", "completion": " The cat sat on the mat." * 4}])
    rows, issues = batching.tokenize_sft(ds, tok, max_length=12, max_prompt_length=4)
    assert len(rows[0].prompt_ids) + len(rows[0].completion_ids) == 12
    assert rows[0].completion_ids[-1] != tok.eos_token_id
    assert issues[0].field == "completion"
    assert issues[0].action == "cut"
    assert "lost its EOS" in issues[0].message


def test_prompt_filling_max_length_drops_row(tok):
    ds = data.load_sft([{"prompt": "The cat sat on the mat." * 4, "completion": " four"},
                        {"prompt": "Hi", "completion": " four"}])
    rows, issues = batching.tokenize_sft(ds, tok, max_length=8, max_prompt_length=None)
    assert [r.line for r in rows] == [2]
    assert [(i.line, i.action) for i in issues] == [(1, "dropped")]


def test_pair_equal_after_cut_dropped(tok):
    ds = data.load_preferences([{"prompt": "Hi", "chosen": " The cat sat", "rejected": " The cat ran"}])
    pairs, issues = batching.tokenize_preferences(ds, tok, max_length=3, max_prompt_length=1)
    assert pairs == []
    assert issues[-1].message == "equals 'chosen' after truncation"


def test_trailing_space_reported(tok):
    ds = data.load_preferences([{"prompt": "Two plus two equals ", "chosen": "four",
                                 "rejected": "five"}])
    pairs, issues = batching.tokenize_preferences(ds, tok, max_length=32, max_prompt_length=16)
    assert issues[0].action == "changed"
    assert pairs[0].chosen_ids[0] == tok(" four")["input_ids"][0]


def test_completion_boundary_views(tok):
    views = batching.completion_boundary(tok, "Two plus two equals", " four")
    parts = [v.part for v in views]
    assert parts == ["prompt"] * (len(views) - 2) + ["completion"] * 2
    assert [v.text for v in views if v.in_loss] == [" four", "<|endoftext|>"]


HH_RLHF = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf-harmless-base" \
    / "test.jsonl.gz"


@pytest.mark.skipif(not HH_RLHF.is_file(), reason="public HH-RLHF sample not present")
def test_hh_rlhf_long_dialogues_reported(tok):
    with gzip.open(HH_RLHF, "rb") as handle:
        raw = b"\n".join(handle.read().split(b"\n")[:60])
    ds = data.load_preferences(raw)
    pairs, issues = batching.tokenize_preferences(ds, tok, max_length=96, max_prompt_length=64)
    assert len(pairs) > 0
    assert any(i.field == "prompt" and i.action == "cut" for i in issues)
    for pair in pairs:
        assert len(pair.prompt_ids) <= 64
        assert len(pair.prompt_ids) + len(pair.chosen_ids) <= 96
        assert len(pair.prompt_ids) + len(pair.rejected_ids) <= 96
