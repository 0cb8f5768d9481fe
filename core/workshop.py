"""The class preference workshop: pairs of model answers, students' votes, and their dataset.

A lecturer opens a session, and a chosen model writes two answers to each of a few prompts
(the session's pairs). Each student sees the pairs one at a time and picks the better answer
or skips. Votes are appended, one JSON line per vote, to the shared file
`$ALIGNMENT_LAB_HOME/preferences/<session>.jsonl`; the pairs are kept in
`<session>.pairs.json` beside it.

Public API:

    validate_session_name(name) -> str
    list_sessions() -> list[str]
    add_pairs(session, pairs) -> list[dict]          store new pairs, return all pairs
    make_pairs(lm, prompts, seed=0, ...) -> list[dict]  two sampled answers per prompt
    read_pairs(session) -> list[dict]
    record_vote(session, pair, voter, choice) -> None  choice: "a", "b" or "skip"
    read_votes(session) -> list[dict]                  each voter's last vote per pair
    next_pair(session, voter) -> dict | None           first pair the voter has not voted on
    shows_b_first(pair_key, voter) -> bool             per-voter display order of the answers
    summarize(session) -> Summary                      counts and agreement
    preference_rows(session) -> list[dict]             majority winner per pair, for DPO
    votes_path(session) -> Path

Agreement of a pair is the share of its non-skip votes that went to the majority answer:
1.0 when everyone agreed, 0.5 for an even split. Range [0.5, 1], higher means more agreement.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from core import paths
from core.checkpoints import write_json_atomic

SESSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
CHOICES = ("a", "b", "skip")


class WorkshopError(ValueError):
    """A session name, pair or vote is invalid."""


@dataclass
class Summary:
    """Vote counts of one session; `per_pair` has one dict per pair with its counts."""

    n_pairs: int
    n_votes: int  # votes for "a" or "b", each voter counted once per pair
    n_skips: int
    n_voters: int
    agreement: float | None  # vote-weighted mean agreement over pairs with 2+ votes
    per_pair: list[dict[str, Any]]


def validate_session_name(name: str) -> str:
    """Return `name` stripped, or raise WorkshopError when it cannot name a file."""
    name = (name or "").strip()
    if not SESSION_PATTERN.match(name):
        raise WorkshopError(
            f"Invalid session name {name!r}: use 1 to 60 letters, digits, '-' or '_', "
            "starting with a letter or digit (for example 'seminar-3')."
        )
    return name


def _folder() -> Path:
    folder = paths.lab_home() / "preferences"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def votes_path(session: str) -> Path:
    """Return the shared votes file of `session` (it may not exist yet)."""
    return _folder() / f"{validate_session_name(session)}.jsonl"


def _pairs_path(session: str) -> Path:
    return _folder() / f"{validate_session_name(session)}.pairs.json"


def list_sessions() -> list[str]:
    """Return the names of sessions that have pairs or votes, sorted."""
    names = set()
    for path in _folder().iterdir():
        if path.name.endswith(".pairs.json"):
            names.add(path.name[: -len(".pairs.json")])
        elif path.suffix == ".jsonl":
            names.add(path.stem)
    return sorted(name for name in names if SESSION_PATTERN.match(name))


def pair_id(prompt: str, response_a: str, response_b: str) -> str:
    """Return a short stable id of a pair, from its text."""
    blob = json.dumps([prompt, response_a, response_b], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def read_pairs(session: str) -> list[dict[str, Any]]:
    """Return the session's pairs ({"id", "prompt", "a", "b", "model"}) in the order added."""
    path = _pairs_path(session)
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8"))


def add_pairs(session: str, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add pairs ({"prompt", "a", "b", "model"}) to the session; return all its pairs.

    Pairs whose two answers are equal are rejected, since no one can prefer one of them. A
    pair already in the session is kept once.
    """
    with _locked(_pairs_path(session).with_suffix(".lock")):
        stored = read_pairs(session)
        known = {pair["id"] for pair in stored}
        for pair in pairs:
            if pair["a"].strip() == pair["b"].strip():
                raise WorkshopError(
                    f"The two answers to {pair['prompt']!r} are the same; generate again with "
                    "another seed or a higher temperature."
                )
            entry = {"id": pair_id(pair["prompt"], pair["a"], pair["b"]), **pair}
            if entry["id"] not in known:
                stored.append(entry)
                known.add(entry["id"])
        write_json_atomic(_pairs_path(session), stored)
    return stored


def make_pairs(lm, prompts: list[str], seed: int = 0, temperature: float = 1.0,
               max_new_tokens: int = 40, tries: int = 4) -> list[dict[str, Any]]:
    """Sample two different answers from `lm` (a LoadedModel) to each prompt.

    A prompt whose two samples are still equal after `tries` seeds is left out.
    """
    from core.inference import GenerationConfig, generate  # imports torch

    pairs = []
    for index, prompt in enumerate(p.strip() for p in prompts):
        if not prompt:
            continue
        for attempt in range(tries):
            config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                      n_samples=2, seed=seed + 1000 * attempt + index,
                                      chat=lm.has_chat_template)
            first, second = (g.text.strip() for g in generate(lm, prompt, config))
            if first and second and first != second:
                pairs.append({"prompt": prompt, "a": first, "b": second, "model": lm.name})
                break
    return pairs


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[TextIO]:
    """Hold an exclusive flock on `path` (opened for appending) for a `with` block."""
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_vote(session: str, pair: dict[str, Any], voter: str, choice: str) -> None:
    """Append one vote to the session's shared file under an exclusive lock.

    The line is written in one call, after a newline if an earlier writer died mid-line, so
    every complete vote stays on its own line and a torn fragment is skipped on reading.
    """
    if choice not in CHOICES:
        raise WorkshopError(f"Invalid choice {choice!r}: use one of {', '.join(CHOICES)}.")
    if not voter:
        raise WorkshopError("A vote needs a voter id.")
    record = {"pair": pair["id"], "voter": voter, "choice": choice, "prompt": pair["prompt"],
              "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if choice != "skip":
        winner, loser = (pair["a"], pair["b"]) if choice == "a" else (pair["b"], pair["a"])
        record.update(chosen=winner, rejected=loser, model=pair.get("model"))
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _locked(votes_path(session)) as handle:
        with open(votes_path(session), "rb") as existing:
            existing.seek(0, 2)
            if existing.tell():
                existing.seek(-1, 2)
                if existing.read(1) != b"\n":
                    line = "\n" + line
        handle.write(line)
        handle.flush()


def read_votes(session: str) -> list[dict[str, Any]]:
    """Return each voter's last vote on each pair; unreadable lines are skipped."""
    path = votes_path(session)
    if not path.is_file():
        return []
    latest: dict[tuple[str, str], dict] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            vote = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(vote, dict) and vote.get("choice") in CHOICES and "pair" in vote:
            latest[(vote["pair"], vote.get("voter", ""))] = vote
    return list(latest.values())


def next_pair(session: str, voter: str) -> dict[str, Any] | None:
    """Return the first pair `voter` has not voted on or skipped, or None when done."""
    seen = {vote["pair"] for vote in read_votes(session) if vote.get("voter") == voter}
    return next((pair for pair in read_pairs(session) if pair["id"] not in seen), None)


def shows_b_first(pair_key: str, voter: str) -> bool:
    """Return True when this voter gets answer "b" on the left, so position does not bias votes.

    The order is a hash of the pair id and the voter, so it stays the same across reruns.
    """
    return hashlib.sha256(f"{pair_key}:{voter}".encode()).digest()[0] % 2 == 1


def summarize(session: str) -> Summary:
    """Count the votes per pair and measure agreement (see the module docstring)."""
    votes = read_votes(session)
    counts: dict[str, Counter] = {}
    for vote in votes:
        counts.setdefault(vote["pair"], Counter())[vote["choice"]] += 1
    per_pair, agree_sum, agree_weight = [], 0.0, 0
    for pair in read_pairs(session):
        count = counts.get(pair["id"], Counter())
        n = count["a"] + count["b"]
        agreement = max(count["a"], count["b"]) / n if n else None
        if n >= 2:
            agree_sum += agreement * n
            agree_weight += n
        per_pair.append({"pair": pair["id"], "prompt": pair["prompt"], "votes_a": count["a"],
                         "votes_b": count["b"], "skips": count["skip"], "agreement": agreement})
    return Summary(
        n_pairs=len(per_pair),
        n_votes=sum(1 for vote in votes if vote["choice"] != "skip"),
        n_skips=sum(1 for vote in votes if vote["choice"] == "skip"),
        n_voters=len({vote.get("voter") for vote in votes}),
        agreement=agree_sum / agree_weight if agree_weight else None,
        per_pair=per_pair,
    )


def preference_rows(session: str) -> list[dict[str, str]]:
    """Return one {"prompt", "chosen", "rejected"} row per pair with a strict majority.

    Pairs without votes or with a tied vote are left out.
    """
    pairs = {pair["id"]: pair for pair in read_pairs(session)}
    rows = []
    for entry in summarize(session).per_pair:
        if entry["votes_a"] == entry["votes_b"]:
            continue
        pair = pairs[entry["pair"]]
        a_wins = entry["votes_a"] > entry["votes_b"]
        chosen, rejected = (pair["a"], pair["b"]) if a_wins else (pair["b"], pair["a"])
        rows.append({"prompt": pair["prompt"], "chosen": chosen, "rejected": rejected})
    return rows
