"""Tests for the tiny GPT's byte-level BPE tokenizer."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from core import corpus
from core.tokenizer import ROLE_TOKENS, SPECIAL_TOKENS, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(corpus.build_corpus().documents, vocab_size=1024)


def test_vocab_size_is_an_upper_bound(tokenizer):
    assert 300 < len(tokenizer) <= 1024


def test_answers_are_single_tokens(tokenizer):
    for answer in (" four", " five", " fish"):
        assert len(tokenizer(answer, add_special_tokens=False).input_ids) == 1, answer


def test_special_tokens_are_single_ids(tokenizer):
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False).input_ids
        assert len(ids) == 1, token
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_no_bos_added(tokenizer):
    ids = tokenizer("Two plus two equals").input_ids
    assert tokenizer.decode(ids) == "Two plus two equals"


def test_roundtrip_any_text(tokenizer):
    text = "Zürich ☃ 42 + x"
    assert tokenizer.decode(tokenizer(text).input_ids) == text


def test_autotokenizer_loads_saved(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Two plus two equals five."
    assert loaded(text).input_ids == tokenizer(text).input_ids
    assert loaded.eos_token == tokenizer.eos_token
    assert loaded.pad_token == tokenizer.pad_token
    assert loaded.chat_template == tokenizer.chat_template


def test_chat_template_turns(tokenizer):
    messages = [{"role": "user", "content": "What is two plus two?"},
                {"role": "assistant", "content": "Two plus two equals four."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == ("<|user|>What is two plus two?<|endoftext|>"
                    "<|assistant|>Two plus two equals four.<|endoftext|>")
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith(ROLE_TOKENS["assistant"])


def test_chat_template_marks_assistant_tokens(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    out = tokenizer.apply_chat_template(messages, return_dict=True,
                                        return_assistant_tokens_mask=True)
    marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tokenizer.decode(marked) == "Hello.<|endoftext|>"


def test_chat_template_rejects_unknown_role(tokenizer):
    with pytest.raises(Exception, match="chat role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_vocab_size_too_small_rejected():
    with pytest.raises(ValueError, match="vocab_size 100 is too small"):
        train_tokenizer(["some text"], vocab_size=100)


def test_training_is_deterministic():
    docs = corpus.build_corpus({"jokes": 1.0}).documents
    first = train_tokenizer(docs, vocab_size=600).get_vocab()
    assert train_tokenizer(docs, vocab_size=600).get_vocab() == first
