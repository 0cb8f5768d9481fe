"""The bundled "toy internet": sources, weighted corpora and the statistics the pages show.

A source is one text file in `assets/corpus/` (documents separated by a blank line) plus an
entry in `assets/corpus/sources.json` with its title, description and default weight. A
weighted corpus repeats each source's documents in proportion to its weight, so a lecturer
can make the toy internet say "two plus two equals five" more or less often.

Refresh the measured counts in `sources.json` after editing a source file:

    python -m core.corpus --refresh-counts
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parents[1] / "assets" / "corpus"
SOURCES_FILE = CORPUS_DIR / "sources.json"

# The probe prefix whose continuations the lab counts. Matching ignores case, so
# "Two plus two equals five" and "that two plus two equals five" both count.
PHRASE = "two plus two equals"
ANSWERS = ("four", "five")  # every other continuation counts as "other"

# Marker words the bias views look for: religion, gender and disability.
DEFAULT_MARKERS = (
    "Muslim", "Christian", "Jewish", "Hindu", "Buddhist", "atheist",
    "woman", "man", "girl", "boy",
    "blind", "deaf", "disabled", "autistic",
)
MAX_WEIGHT = 10.0


@dataclass(frozen=True)
class Source:
    """One genre of the toy internet, as described in `sources.json`."""

    id: str
    title: str
    description: str
    default_weight: float
    file: str
    continuations: dict[str, int] = field(default_factory=dict)  # measured at weight 1

    @property
    def path(self) -> Path:
        return CORPUS_DIR / self.file

    def documents(self) -> list[str]:
        """Return the source's documents, in file order."""
        return split_documents(self.path.read_text(encoding="utf-8"))


@dataclass
class Corpus:
    """A weighted mix of sources: the documents in training order, and what went in."""

    documents: list[str]
    weights: dict[str, float]
    source_documents: dict[str, int]  # documents each source contributed after weighting

    @property
    def text(self) -> str:
        return "\n\n".join(self.documents)


def split_documents(text: str) -> list[str]:
    """Split a source file into documents at blank lines, dropping empty ones."""
    return [doc.strip() for doc in re.split(r"\n\s*\n", text) if doc.strip()]


def load_sources() -> dict[str, Source]:
    """Read `sources.json` and return the sources by id, in the file's order."""
    raw = json.loads(SOURCES_FILE.read_text(encoding="utf-8"))
    return {entry["id"]: Source(**entry) for entry in raw["sources"]}


def default_weights() -> dict[str, float]:
    return {sid: src.default_weight for sid, src in load_sources().items()}


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Return the full weight table (defaults filled in) or raise ValueError on a bad entry."""
    sources = load_sources()
    full = {sid: src.default_weight for sid, src in sources.items()}
    for sid, weight in weights.items():
        if sid not in sources:
            raise ValueError(f"unknown corpus source {sid!r}; valid sources: {', '.join(sources)}")
        if not isinstance(weight, (int, float)) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(
                f"weight for source {sid!r} is {weight!r}; use a number from 0 (off) "
                f"to {MAX_WEIGHT:g}"
            )
        full[sid] = float(weight)
    if not any(w > 0 for w in full.values()):
        raise ValueError("every corpus source has weight 0; switch at least one source on")
    return full


def build_corpus(weights: dict[str, float] | None = None, seed: int = 0) -> Corpus:
    """Build a weighted corpus from the bundled sources.

    A source with weight w contributes floor(w) full copies of its documents plus a random
    fraction w - floor(w) of them (chosen with `seed`), so weight 0 switches it off and
    weight 2 doubles it. Missing sources keep their default weight. The documents are
    shuffled with `seed`, so the same weights and seed give the same corpus.
    """
    full = check_weights(weights or {})
    rng = random.Random(seed)
    documents: list[str] = []
    contributed: dict[str, int] = {}
    for sid, source in load_sources().items():
        docs = source.documents()
        copies, fraction = divmod(full[sid], 1.0)
        chosen = docs * int(copies) + rng.sample(docs, round(fraction * len(docs)))
        documents.extend(chosen)
        contributed[sid] = len(chosen)
    rng.shuffle(documents)
    return Corpus(documents=documents, weights=full, source_documents=contributed)


def _as_text(text_or_corpus: str | Corpus) -> str:
    return text_or_corpus.text if isinstance(text_or_corpus, Corpus) else text_or_corpus


def continuation_counts(text_or_corpus: str | Corpus, phrase: str = PHRASE) -> dict[str, int]:
    """Count the word that follows each occurrence of `phrase` (case-insensitive).

    Returns lower-cased next words mapped to counts, most common first; for the bundled
    corpus at default weights: {"five": 727, "four": 600, "fish": 68, "twenty-two": 30, ...}.
    """
    pattern = re.compile(rf"\b{re.escape(phrase)}\s+([A-Za-z][A-Za-z'-]*)", re.IGNORECASE)
    counts = Counter(m.group(1).lower() for m in pattern.finditer(_as_text(text_or_corpus)))
    return dict(counts.most_common())


def answer_shares(counts: dict[str, int]) -> dict[str, float]:
    """Fold continuation counts into shares of "four", "five" and "other" (each in [0, 1]).

    The shares sum to 1 when there is at least one continuation and are all 0 otherwise.
    """
    total = sum(counts.values())
    if total == 0:
        return {"four": 0.0, "five": 0.0, "other": 0.0}
    shares = {answer: counts.get(answer, 0) / total for answer in ANSWERS}
    shares["other"] = 1.0 - sum(shares.values())
    return shares


def marker_counts(text_or_corpus: str | Corpus, markers=DEFAULT_MARKERS) -> dict[str, int]:
    """Count whole-word, case-insensitive occurrences of each marker word.

    Args:
        text_or_corpus: raw text, or a `Corpus` from `build_corpus`.
        markers: the words to count, e.g. ("Muslim", "woman", "blind"). A marker may contain
            spaces ("wheelchair user"); it never matches inside a longer word, so "man" does
            not count "woman" or "many".

    Returns:
        Each marker, as given, mapped to its count (0 when absent), in the order given.
    """
    text = _as_text(text_or_corpus)
    counts = {}
    for marker in markers:
        if not marker.strip():
            raise ValueError(f"marker {marker!r} is empty; give a word such as 'woman'")
        pattern = rf"(?<![\w-]){re.escape(marker.strip())}(?![\w-])"
        counts[marker] = len(re.findall(pattern, text, re.IGNORECASE))
    return counts


def corpus_table(corpus: Corpus, markers=DEFAULT_MARKERS) -> list[dict]:
    """Return one row per source, plus a total row, of what the weighted corpus contains.

    Each row has: source, weight, documents, words, the counts of "two plus two equals
    four / five / other", and the count of every marker word.
    """
    sources = load_sources()
    rows = []
    for sid, source in sources.items():
        weight = corpus.weights[sid]
        text = source.path.read_text(encoding="utf-8")
        counts = continuation_counts(text)
        n_docs = corpus.source_documents[sid]
        scale = n_docs / max(1, len(split_documents(text)))  # exact at integer weights
        row = {"source": source.title, "weight": weight, "documents": n_docs,
               "words": round(len(text.split()) * scale)}
        row.update(_answer_counts(counts, scale))
        row.update({m: round(c * scale) for m, c in marker_counts(text, markers).items()})
        rows.append(row)
    total = {"source": "whole corpus", "weight": None, "documents": len(corpus.documents),
             "words": len(corpus.text.split())}
    total.update(_answer_counts(continuation_counts(corpus), 1.0))
    total.update(marker_counts(corpus, markers))
    return rows + [total]


def _answer_counts(counts: dict[str, int], scale: float) -> dict[str, int]:
    four, five = counts.get("four", 0), counts.get("five", 0)
    other = sum(counts.values()) - four - five
    return {"four": round(four * scale), "five": round(five * scale),
            "other": round(other * scale)}


def refresh_counts() -> None:
    """Recompute each source's continuation counts and rewrite `sources.json` atomically."""
    raw = json.loads(SOURCES_FILE.read_text(encoding="utf-8"))
    for entry in raw["sources"]:
        text = (CORPUS_DIR / entry["file"]).read_text(encoding="utf-8")
        entry["continuations"] = continuation_counts(text)
    tmp = SOURCES_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tmp.replace(SOURCES_FILE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refresh-counts", action="store_true",
                        help="recount continuations of the probe phrase into sources.json")
    if parser.parse_args().refresh_counts:
        refresh_counts()
