"""Output diversity: how different a model's sampled continuations are, per prompt and overall.

For each prompt the model samples `n_samples` continuations of exactly `length` tokens (EOS
is masked out, so no metric is confounded by length) at each temperature. Scores:

- distinct-n (Li et al. 2016) and EAD, its expectation-adjusted form (Liu et al. 2022);
- self-BLEU (Zhu et al. 2018), each sample scored against the others as references;
- embedding diversity, 1 - mean pairwise cosine of one fixed encoder's embeddings;
- variety, exp of the entropy of the normalised short answers (how many distinct answers);
- per-token entropy of the model's next-token distribution (0 to log V nats, lower is less
  diverse) and the branching factor, exp of that entropy (1 to V, lower is less diverse);
- KL divergence per token from the model to the reference (base) model on its own samples
  (0 upwards; higher means further from the reference, not by itself less diverse).

Text metrics are computed on tokens of the reference model's tokenizer and embeddings come
from the reference model's middle layer, so every model is measured with the same ruler.
"Within prompt" scores use the samples of one prompt and are averaged over prompts;
"across prompts" scores use the first sample of every prompt, which shows whether the model
says the same thing whatever it is asked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core import inference
from core.models import LoadedModel

TEXT_METRICS = {  # name: (label, direction meaning "less diverse")
    "distinct_1": ("distinct-1", "lower"),
    "distinct_2": ("distinct-2", "lower"),
    "ead_1": ("EAD-1 (length-corrected distinct-1)", "lower"),
    "ead_2": ("EAD-2 (length-corrected distinct-2)", "lower"),
    "self_bleu": ("self-BLEU", "higher"),
    "embedding_diversity": ("embedding diversity", "lower"),
    "variety": ("variety (distinct short answers)", "lower"),
}
TOKEN_METRICS = {
    "entropy": ("per-token entropy (nats)", "lower"),
    "branching_factor": ("branching factor", "lower"),
    # KL measures distance from the reference, not diversity, so it has no direction here.
    "kl_to_reference": ("KL to the reference model per token (nats)", "n/a"),
}
ANSWER_WORDS = 5  # a short answer is the first five normalised words of a sample


@dataclass(frozen=True)
class DiversitySettings:
    """Sampling settings; every model of a comparison uses the same ones."""

    n_samples: int = 8  # continuations per prompt
    length: int = 24  # tokens per continuation, the same for every sample
    temperatures: tuple[float, ...] = (1.0, 0.7)
    seed: int = 0  # the same seed gives the same samples from the same model
    n_boot: int = 200  # bootstrap resamples over prompts for within-prompt intervals

    def validate(self) -> None:
        if self.n_samples < 2:
            raise ValueError(f"n_samples={self.n_samples} is invalid; diversity needs 2 or more.")
        if self.length < 2:
            raise ValueError(f"length={self.length} is invalid; use 2 or more tokens.")
        bad = [t for t in self.temperatures if t <= 0]
        if bad or not self.temperatures:
            raise ValueError(f"temperatures={self.temperatures} are invalid; use values above 0.")


# Text metrics

def ngrams(tokens: list, n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples: list[list], n: int) -> float:
    """Return unique n-grams / all n-grams over the samples. Range 0 to 1; lower is less diverse."""
    grams = [g for tokens in samples for g in ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def ead_n(samples: list[list], n: int, vocab_size: int) -> float:
    """Return expectation-adjusted distinct-n (Liu et al. 2022): unique / expected unique.

    The expected number of unique items among C draws from a uniform vocabulary of V is
    V (1 - ((V - 1) / V)^C); dividing by it removes distinct-n's drop with length. Near 1
    for text as varied as uniform draws, lower is less diverse (it can exceed 1 slightly).
    NOTE: V is the tokenizer's vocabulary size for every n, as in the paper's formula for
    tokens; for n > 1 the expectation is then close to C and EAD close to distinct-n.
    """
    grams = [g for tokens in samples for g in ngrams(tokens, n)]
    if not grams:
        return float("nan")
    count = len(grams)
    expected = vocab_size * -math.expm1(count * math.log1p(-1.0 / vocab_size))
    return len(set(grams)) / expected


def sentence_bleu(hypothesis: list, references: list[list], max_n: int = 4) -> float:
    """Return BLEU-4 of one tokenised hypothesis against several references (Papineni 2002).

    Clipped n-gram precisions for n = 1..4, their geometric mean, and the brevity penalty
    against the reference length closest to the hypothesis. A zero count is replaced by 0.1
    (Chen and Cherry 2014, method 1) so short texts do not all score 0. Range 0 to 1.
    """
    if not hypothesis or not references:
        return float("nan")
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(ngrams(hypothesis, n))
        max_ref = Counter()
        for ref in references:
            for gram, c in Counter(ngrams(ref, n)).items():
                max_ref[gram] = max(max_ref[gram], c)
        total = max(sum(counts.values()), 1)
        clipped = sum(min(c, max_ref[g]) for g, c in counts.items())
        log_precision += math.log((clipped if clipped > 0 else 0.1) / total) / max_n
    hyp_len = len(hypothesis)
    ref_len = min((abs(len(r) - hyp_len), len(r)) for r in references)[1]
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def self_bleu(samples: list[list]) -> float:
    """Return the mean BLEU-4 of each sample against all the others.

    Range 0 to 1; higher is less diverse (1 when all samples are the same text).
    """
    if len(samples) < 2:
        return float("nan")
    scores = [sentence_bleu(s, samples[:i] + samples[i + 1:]) for i, s in enumerate(samples)]
    return float(np.mean(scores))


def normalize_short_answer(text: str, n_words: int = ANSWER_WORDS) -> str:
    """Lowercase, drop punctuation and keep the first words, so "Four." and "four" match."""
    words = re.findall(r"\w+", text.lower())
    return " ".join(inference.normalize_answer(w) for w in words[:n_words])


def variety(texts: list[str]) -> float:
    """Return exp of the entropy of the normalised short answers: the effective count of
    distinct answers. Range 1 (all the same) to len(texts); lower is less diverse."""
    counts = np.array(list(Counter(normalize_short_answer(t) for t in texts).values()), float)
    p = counts / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def embedding_diversity(embeddings: np.ndarray) -> float:
    """Return 1 - mean pairwise cosine of the rows of (S, D). Range 0 to 2; lower is less
    diverse. Hidden states share a large common direction, so values sit well below 1."""
    from core.geometry import mean_pairwise_cosine

    return 1.0 - mean_pairwise_cosine(embeddings)


# Sampling and per-token scores

@torch.no_grad()
def sample_fixed_length(lm: LoadedModel, prompt_ids: list[int], n: int, length: int,
                        temperature: float, seed: int) -> torch.Tensor:
    """Sample `n` continuations of exactly `length` tokens with EOS masked out; (n, length).

    Uses its own seeded torch.Generator, so the same seed gives the same tokens.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eos_id = lm.tokenizer.eos_token_id
    step = torch.tensor([prompt_ids] * n, device=lm.device)  # (n, T)
    past, out = None, []
    for _ in range(length):
        output = lm.model(input_ids=step, cache=past, use_cache=True, logits_to_keep=1)
        past = output.cache
        logits = output.logits[:, -1].float() / temperature  # (n, V)
        if eos_id is not None:
            logits[:, eos_id] = float("-inf")
        next_ids = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator)
        out.append(next_ids)
        step = next_ids.to(lm.device)
    return torch.cat(out, 1)


@torch.no_grad()
def _continuation_logps(lm: LoadedModel, prompt_ids: list[int], samples: torch.Tensor
                        ) -> torch.Tensor:
    """Return fp32 log-probs over the vocabulary at each sampled position, (n, length, V)."""
    prompt = torch.tensor([prompt_ids] * len(samples), device=lm.device)
    ids = torch.cat([prompt, samples.to(lm.device)], 1)  # (n, T + length)
    logits = lm.model(input_ids=ids).logits[:, len(prompt_ids) - 1:-1]  # (n, length, V)
    return F.log_softmax(logits.float(), dim=-1)


def _token_scores(lm, reference, prompt_ids, samples) -> tuple[float, float]:
    logps = _continuation_logps(lm, prompt_ids, samples)  # (n, length, V)
    entropy = float(-(logps.exp() * logps).sum(-1).mean())
    if reference is None:
        return entropy, float("nan")
    ref_logps = _continuation_logps(reference, prompt_ids, samples)
    kl = float((logps.exp() * (logps - ref_logps)).sum(-1).mean())  # KL(model || reference)
    return entropy, kl


def same_vocabulary(a: LoadedModel, b: LoadedModel) -> bool:
    """Return whether two models share a tokenizer, which KL and shared scoring need."""
    return len(a.tokenizer) == len(b.tokenizer) and a.tokenizer.get_vocab() == b.tokenizer.get_vocab()


# Measurement

def _percentile_interval(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _text_scores(token_lists: list[list[int]], texts: list[str], vocab_size: int
                 ) -> dict[str, float]:
    return {
        "distinct_1": distinct_n(token_lists, 1), "distinct_2": distinct_n(token_lists, 2),
        "ead_1": ead_n(token_lists, 1, vocab_size), "ead_2": ead_n(token_lists, 2, vocab_size),
        "self_bleu": self_bleu(token_lists), "variety": variety(texts),
    }


def _sample_prompts(lm, reference, prompts, temperature, settings) -> pd.DataFrame:
    rows = []
    shared = reference is not None and same_vocabulary(lm, reference)
    for index, prompt in enumerate(prompts):
        prompt_ids = inference.encode(lm, prompt)
        if not prompt_ids:
            raise ValueError(f"Prompt {index} is empty after tokenizing; remove it.")
        samples = sample_fixed_length(lm, prompt_ids, settings.n_samples, settings.length,
                                      temperature, settings.seed + index)
        entropy, kl = _token_scores(lm, reference if shared else None, prompt_ids, samples)
        for sample_index, ids in enumerate(samples.tolist()):
            rows.append({"prompt_index": index, "prompt": prompt, "sample": sample_index,
                         "text": lm.tokenizer.decode(ids, skip_special_tokens=True),
                         "token_ids": ids, "entropy": entropy, "kl_to_reference": kl})
    return pd.DataFrame(rows)


def _embed(reference: LoadedModel, texts: list[str]) -> np.ndarray:
    # NOTE: a sample that decodes to nothing (only special tokens) is embedded as "(empty)".
    safe = [text if text.strip() else "(empty)" for text in texts]
    body = dataclasses.replace(reference, model=reference.model.base_model)  # no LM head
    states = inference.hidden_states(body, safe, batch_size=32)["mean"]  # (L+1, S, D)
    return states[reference.n_layer // 2].numpy()


def _within_and_token_rows(frame, embeddings, vocab_size, settings) -> list[dict]:
    per_prompt = []
    for _, group in frame.groupby("prompt_index"):
        scores = _text_scores(list(group["ruler_ids"]), list(group["text"]), vocab_size)
        scores["embedding_diversity"] = embedding_diversity(embeddings[group.index])
        scores["entropy"] = group["entropy"].iloc[0]
        scores["kl_to_reference"] = group["kl_to_reference"].iloc[0]
        per_prompt.append(scores)
    per_prompt = pd.DataFrame(per_prompt)

    rows = []
    for metric in list(TEXT_METRICS) + ["entropy", "kl_to_reference"]:
        values = per_prompt[metric].to_numpy(dtype=float)
        low, high = _percentile_interval(values, settings.n_boot, settings.seed)
        value = float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
        scope = "within prompt" if metric in TEXT_METRICS else "per token"
        rows.append({"metric": metric, "scope": scope, "value": value, "low": low, "high": high})

    # The branching factor is exp(entropy), so its interval is the image of entropy's.
    entropy = next(row for row in rows if row["metric"] == "entropy")
    rows.append({"metric": "branching_factor", "scope": "per token",
                 "value": math.exp(entropy["value"]), "low": math.exp(entropy["low"]),
                 "high": math.exp(entropy["high"])})
    return rows


def _across_rows(frame, embeddings, vocab_size) -> list[dict]:
    firsts = frame[frame["sample"] == 0]
    across = _text_scores(list(firsts["ruler_ids"]), list(firsts["text"]), vocab_size)
    across["embedding_diversity"] = embedding_diversity(embeddings[firsts.index])
    return [{"metric": metric, "scope": "across prompts", "value": value,
             "low": float("nan"), "high": float("nan")} for metric, value in across.items()]


def _score_frame(frame: pd.DataFrame, lm, reference, settings, shared: bool) -> list[dict]:
    ruler = reference if reference is not None else lm
    if shared or reference is None:
        frame["ruler_ids"] = frame["token_ids"]
    else:
        frame["ruler_ids"] = [ruler.tokenizer(t, add_special_tokens=False)["input_ids"]
                              for t in frame["text"]]
    embeddings = _embed(ruler, list(frame["text"]))  # (P * n, D)
    vocab_size = len(ruler.tokenizer)
    return (_within_and_token_rows(frame, embeddings, vocab_size, settings)
            + _across_rows(frame, embeddings, vocab_size))


def measure_diversity(lm: LoadedModel, prompts: list[str], reference: LoadedModel | None = None,
                      settings: DiversitySettings | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample from `lm` at every temperature and score the samples.

    `reference` (the base model) is the fixed ruler for tokens and embeddings and the target
    of the KL; without it, `lm` measures itself and the KL is NaN. The KL is also NaN when
    the two tokenizers differ. Returns (table, samples). The table has one row per
    temperature, scope and metric with `value`, `low` and `high`, where the interval is a 95%
    bootstrap over prompts for within-prompt and per-token scores. The samples frame has
    every continuation.
    """
    settings = settings or DiversitySettings()
    settings.validate()
    if len(prompts) < 2:
        raise ValueError(f"Got {len(prompts)} prompts; across-prompt scores need 2 or more.")
    shared = reference is not None and same_vocabulary(lm, reference)
    tables, sample_frames = [], []
    for temperature in settings.temperatures:
        frame = _sample_prompts(lm, reference, prompts, temperature, settings)
        rows = _score_frame(frame, lm, reference, settings, shared)
        table = pd.DataFrame(rows)
        table.insert(0, "temperature", temperature)
        tables.append(table)
        sample_frames.append(frame.drop(columns=["token_ids", "ruler_ids"]).assign(
            temperature=temperature))
    table = pd.concat(tables, ignore_index=True)
    labels = {**TEXT_METRICS, **TOKEN_METRICS}
    table["label"] = table["metric"].map(lambda m: labels[m][0])
    table["less_diverse_when"] = table["metric"].map(lambda m: labels[m][1])
    table.insert(0, "model", lm.name)
    samples = pd.concat(sample_frames, ignore_index=True)
    samples.insert(0, "model", lm.name)
    return table, samples


def cached_diversity(lm: LoadedModel, prompts: list[str], reference: LoadedModel | None = None,
                     settings: DiversitySettings | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run `measure_diversity` once per model, reference, prompts and settings; the result is
    stored under `$ALIGNMENT_LAB_HOME/cache/collapse/` and read back on the next call."""
    from core import collapse

    settings = settings or DiversitySettings()
    key = collapse.cache_key([
        "diversity", collapse.model_fingerprint(lm),
        collapse.model_fingerprint(reference) if reference is not None else None,
        prompts, asdict(settings),
    ])
    path = collapse.cache_root() / f"diversity-{key}.json"
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        table, samples = pd.DataFrame(stored["table"]), pd.DataFrame(stored["samples"])
    else:
        table, samples = measure_diversity(lm, prompts, reference, settings)
        text = json.dumps({"table": table.to_dict(orient="records"),
                           "samples": samples.to_dict(orient="records")})
        collapse.write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))
    table["model"], samples["model"] = lm.name, lm.name
    return table, samples
