"""Byte-level BPE tokenizer for the tiny GPT, trained on the toy internet.

The tokenizer is a `tokenizers` BPE model with GPT-2's byte-level pre-tokenizer (so any text
encodes, and " four" is a different token from "four"), wrapped as a transformers fast
tokenizer so that `AutoTokenizer.from_pretrained(folder)` loads what `save_pretrained` wrote.

Special tokens:
    <|endoftext|>  end of a document in pretraining, and end of a chat turn (the eos token)
    <|pad|>        padding; never trained on
    <|system|>, <|user|>, <|assistant|>  start of a chat turn

No bos token is added, so a prompt such as "Two plus two equals" starts the sequence the
way a document starts in pretraining.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, *ROLE_TOKENS.values()]
DEFAULT_VOCAB_SIZE = 4096
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # the byte alphabet plus the special tokens

# Each turn is the role token, the content, then <|endoftext|>. With
# add_generation_prompt the prompt ends with <|assistant|>, so the reply starts right after
# a special token, just as a pretraining document starts at the beginning of a sequence.
# The {% generation %} block marks assistant tokens for `return_assistant_tokens_mask`.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('chat role must be system, user or assistant, not ' "
    "+ message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|endoftext|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|endoftext|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it for transformers.

    `vocab_size` is an upper bound: on a small corpus BPE runs out of pairs seen at least
    twice and stops earlier, so check `len(tokenizer)` for the real size.
    """
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size {vocab_size!r} is too small; use an integer of at least "
            f"{MIN_VOCAB_SIZE} (256 bytes plus {len(SPECIAL_TOKENS)} special tokens)"
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(bpe)


def wrap_tokenizer(bpe: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a trained `tokenizers.Tokenizer` with the lab's special tokens and chat template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS.values()),
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
