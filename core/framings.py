"""Framings of one question, and the tables the Probabilities page and the CLI show.

A framing is one way to ask for the same answer: a bare sentence to complete, a sentence
that mentions Orwell, a chat question. Each line of a framing list reads
`[chat:] prompt [=> start of the reply]`; `chat:` wraps the prompt in the model's chat
template, and the text after `=>` starts the assistant's reply so that the next token is the
answer itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from core import inference
from core.models import LoadedModel

DEFAULT_FRAMINGS = """Two plus two equals
In Orwell's novel, two plus two equals
The Radiohead song says that two plus two equals
Q: What is two plus two? A: Two plus two equals
chat: What is 2+2? => 2+2 equals
chat: What is the range of answers to 2+2? => The most common answer is"""

# surface forms summed into one answer; the first is the form shown
ANSWER_FORMS = {
    "four": [" four", " Four", " 4"],
    "five": [" five", " Five", " 5"],
}


@dataclass(frozen=True)
class Framing:
    """One framing line, parsed."""

    text: str  # the line as the user wrote it
    prompt: str
    chat: bool
    response_prefix: str


def parse_framings(text: str) -> list[Framing]:
    """Parse one framing per non-empty line; raise ValueError naming a bad line."""
    framings = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        chat = line.lower().startswith("chat:")
        body = line[5:].strip() if chat else line
        prompt, _, prefix = body.partition("=>")
        if not prompt.strip():
            raise ValueError(f"Framing line {number} ({raw!r}) has no prompt; write one before '=>'.")
        framings.append(Framing(line, prompt.strip(), chat, prefix.strip()))
    if not framings:
        raise ValueError("No framings given: write one prompt per line.")
    return framings


def answer_probabilities(lm: LoadedModel, framing: Framing,
                         forms: dict[str, list[str]] | None = None) -> dict[str, float]:
    """Return P(answer) for each answer after a framing, summed over its surface forms."""
    forms = forms or ANSWER_FORMS
    candidates = [form for group in forms.values() for form in group]
    result = inference.next_token_distribution(
        lm, framing.prompt, top_k=1, candidates=candidates, chat=framing.chat,
        merge_forms=False, response_prefix=framing.response_prefix,
    )
    by_form = {c.text: c.prob for c in result.candidates}
    return {answer: sum(by_form[f] for f in group) for answer, group in forms.items()}


def framing_grid(lms: dict[str, LoadedModel], framings: list[Framing],
                 forms: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Return a long table: one row per framing, model and answer, with its probability.

    The models run concurrently, each through every framing.
    """
    per_model = inference.map_models(
        lambda lm: [answer_probabilities(lm, framing, forms) for framing in framings],
        list(lms.values()),
    )
    rows = []
    for index, framing in enumerate(framings):
        for name, answers in zip(lms, per_model):
            for answer, prob in answers[index].items():
                rows.append({"framing": framing.text, "model": name, "answer": answer,
                             "probability": prob})
    return pd.DataFrame(rows)


def candidate_table(results: dict[str, inference.NextTokenResult]) -> pd.DataFrame:
    """Tabulate candidate probabilities per model, with the log-ratio to the first model.

    The log-ratio is ln(P_model / P_first): positive means the model favours the answer more
    than the first model does; 0 means no change.
    """
    names = list(results)
    rows = []
    for index, cand in enumerate(results[names[0]].candidates):
        row = {"candidate": cand.text, "tokens": " | ".join(map(visible_token, cand.tokens))}
        first_logp = cand.logp
        for name in names:
            scored = results[name].candidates[index]
            row[f"P ({name})"] = scored.prob
            if name != names[0]:
                row[f"log-ratio ({name} vs {names[0]})"] = scored.logp - first_logp
        rows.append(row)
    return pd.DataFrame(rows)


def visible_token(token: str) -> str:
    """Show a token's spaces and line breaks: " four" becomes "␣four", "\\n" becomes "↵"."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def top_tokens_table(results: dict[str, inference.NextTokenResult]) -> pd.DataFrame:
    """Return a long table of the top next tokens: model, rank, token, probability."""
    rows = []
    for name, result in results.items():
        for rank, tok in enumerate(result.top, start=1):
            rows.append({"model": name, "rank": rank, "token": visible_token(tok.token),
                         "probability": tok.prob, "logp": tok.logp})
    return pd.DataFrame(rows)


def entropy_table(results: dict[str, inference.NextTokenResult]) -> pd.DataFrame:
    """Return each model's next-token entropy in bits and as an effective number of choices."""
    return pd.DataFrame([
        {"model": name, "entropy (bits)": r.entropy_bits,
         "effective choices": math.exp(r.entropy_nats)}
        for name, r in results.items()
    ])
