"""Training data for SFT and preference methods: formats, loading and validation.

Public API:

- `load_sft(source, fmt=None) -> Dataset` and `load_preferences(source, fmt=None) -> Dataset`
  read a path, raw bytes or a list of dicts (a table edited in the page) and return a
  `Dataset` whose `issues` list every row that was dropped or changed.
- `load_bundled(name) -> Dataset` and `list_bundled() -> list[BundledDataset]` give the
  datasets shipped in `assets/datasets/`.
- `read_records(source, fmt=None) -> (records, issues)` reads JSONL, JSON or CSV into
  `(line, dict)` pairs, so every later message can name the file line.
- `split_implicit_prompt(chosen, rejected) -> (prompt, chosen_reply, rejected_reply)` for
  preference data where both sides are whole dialogues, and `ranked_to_pairs(responses, ranks)`.

Accepted row formats:

- SFT: `{"prompt": str, "completion": str}`, `{"messages": [{"role", "content"}, ...]}` (the
  last message, from the assistant, is the completion) or `{"prompt": [messages],
  "completion": [messages]}`.
- Preferences: `{"prompt", "chosen", "rejected"}` as strings or message lists; `{"chosen",
  "rejected"}` alone, as whole dialogues that share everything but the last reply (the prompt
  is implicit, as in Anthropic's HH-RLHF files); `{"prompt", "responses", "ranks"}` where a
  lower rank is better and every pair with different ranks becomes one preference pair.

Rows that are too long for a model's maximum length are found at tokenization, in
`core.batching`, which appends its own issues to the same list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.data_files import DataError, Issue, Record, is_messages, read_records

Messages = list[dict[str, str]]
Text = str | Messages  # plain text or chat messages

DATASETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "datasets"
ASSISTANT_MARKERS = ("\n\nAssistant:", "\nAssistant:", "Assistant:")


@dataclass(frozen=True)
class SFTRow:
    """One supervised example: the loss is taken on `completion` only."""

    prompt: Text
    completion: Text
    line: int = 0


@dataclass(frozen=True)
class PreferenceRow:
    """One preference pair: `chosen` is preferred over `rejected` as a reply to `prompt`."""

    prompt: Text
    chosen: Text
    rejected: Text
    line: int = 0


@dataclass
class Dataset:
    """Validated rows of one kind plus every issue met while reading them."""

    kind: str  # "sft" or "preference"
    rows: list  # SFTRow or PreferenceRow, in file order
    issues: list[Issue] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    def content_hash(self) -> str:
        """Return the sha256 of the rows' content (line numbers excluded), for run.json."""
        payload = [{k: v for k, v in asdict(row).items() if k != "line"} for row in self.rows]
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()

    def prompts(self) -> list[Text]:
        """Return the distinct prompts in file order (for before/after probabilities)."""
        seen: list[Text] = []
        for row in self.rows:
            if row.prompt not in seen:
                seen.append(row.prompt)
        return seen


@dataclass(frozen=True)
class BundledDataset:
    """A dataset shipped with the lab."""

    name: str  # file stem in assets/datasets/
    kind: str  # "sft" or "preference"
    path: Path
    description: str  # first line of its entry in assets/datasets/README.md


# Row formats

def _is_blank(value: Text) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return all(not m["content"].strip() for m in value)


def _check_text(row: dict, key: str, line: int, issues: list[Issue]) -> Text | None:
    """Return row[key] if it is non-empty text or messages; otherwise record an issue."""
    if key not in row or row[key] is None:
        issues.append(Issue(line, key, f"missing field {key!r}", "dropped"))
        return None
    value = row[key]
    if not isinstance(value, str) and not is_messages(value):
        issues.append(Issue(line, key, "must be text or a list of {role, content} messages, "
                            f"found {type(value).__name__}", "dropped"))
        return None
    if _is_blank(value):
        issues.append(Issue(line, key, "is empty", "dropped"))
        return None
    return value


def parse_sft_row(line: int, row: dict, issues: list[Issue]) -> SFTRow | None:
    """Turn one record into an SFTRow, or record why it cannot be used and return None."""
    if "messages" in row and "completion" not in row:
        messages = row["messages"]
        if not is_messages(messages) or messages[-1]["role"] != "assistant" or len(messages) < 2:
            issues.append(Issue(line, "messages", "must be a list of {role, content} messages "
                                "ending with an assistant reply", "dropped"))
            return None
        if _is_blank(messages[-1:]):
            issues.append(Issue(line, "messages", "the last assistant reply is empty", "dropped"))
            return None
        return SFTRow(messages[:-1], messages[-1:], line)
    prompt = _check_text(row, "prompt", line, issues)
    completion = _check_text(row, "completion", line, issues)
    if prompt is None or completion is None:
        return None
    return SFTRow(prompt, completion, line)


def parse_preference_rows(line: int, row: dict, issues: list[Issue]) -> list[PreferenceRow]:
    """Turn one record into preference pairs (several for a ranked list)."""
    if "responses" in row:
        return _ranked_rows(line, row, issues)
    chosen = _check_text(row, "chosen", line, issues)
    rejected = _check_text(row, "rejected", line, issues)
    if chosen is None or rejected is None:
        return []
    if "prompt" in row:
        prompt = _check_text(row, "prompt", line, issues)
        if prompt is None:
            return []
    else:
        try:
            prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
        except DataError as err:
            issues.append(Issue(line, "chosen", str(err), "dropped"))
            return []
    if chosen == rejected:
        issues.append(Issue(line, "rejected", "is the same as 'chosen', so the pair teaches "
                            "nothing", "dropped"))
        return []
    return [PreferenceRow(prompt, chosen, rejected, line)]


def _ranked_rows(line: int, row: dict, issues: list[Issue]) -> list[PreferenceRow]:
    prompt = _check_text(row, "prompt", line, issues)
    responses, ranks = row.get("responses"), row.get("ranks")
    if prompt is None:
        return []
    if not isinstance(responses, list) or not isinstance(ranks, list) or \
            len(responses) != len(ranks) or len(responses) < 2:
        issues.append(Issue(line, "ranks", "'responses' and 'ranks' must be lists of equal "
                            "length, at least 2", "dropped"))
        return []
    try:
        pairs = ranked_to_pairs(responses, ranks)
    except DataError as err:
        issues.append(Issue(line, "ranks", str(err), "dropped"))
        return []
    return [PreferenceRow(prompt, c, r, line) for c, r in pairs if c != r and not _is_blank(c)
            and not _is_blank(r)]


def ranked_to_pairs(responses: list[Text], ranks: list[float]) -> list[tuple[Text, Text]]:
    """Turn k ranked responses into (chosen, rejected) pairs; rank 1 is best.

    Every two responses with different ranks give one pair, so k responses with distinct
    ranks give k*(k-1)/2 pairs; ties give none. Example: ranks [2, 1, 3] on ["a", "b", "c"]
    give [("b", "a"), ("b", "c"), ("a", "c")].
    """
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ranks):
        raise DataError(f"ranks must be numbers, got {ranks!r}")
    order = sorted(range(len(responses)), key=lambda i: ranks[i])
    pairs = []
    for a, i in enumerate(order):
        for j in order[a + 1:]:
            if ranks[i] < ranks[j]:
                pairs.append((responses[i], responses[j]))
    return pairs


def split_implicit_prompt(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
    """Split two whole dialogues into (shared prompt, chosen reply, rejected reply).

    For message lists the prompt is the shared leading messages. For text the prompt ends
    after the last "Assistant:" marker inside the shared prefix (HH-RLHF style), or else at
    the last whitespace of the shared prefix, so no word is split. Raises DataError when
    nothing is shared.
    """
    if isinstance(chosen, list) and isinstance(rejected, list):
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise DataError("chosen and rejected share no leading messages, so there is no "
                            "prompt; add a 'prompt' field")
        return chosen[:n], chosen[n:], rejected[n:]
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise DataError("chosen and rejected must both be text or both be message lists")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    prefix = chosen[:shared]
    for marker in ASSISTANT_MARKERS:
        cut = prefix.rfind(marker)
        if cut >= 0:
            cut += len(marker)
            break
    else:
        cut = max(prefix.rfind(" "), prefix.rfind("\n"))
    if cut <= 0:
        raise DataError("chosen and rejected share no prompt; add a 'prompt' field")
    return chosen[:cut], chosen[cut:], rejected[cut:]


# Whole datasets

def _key(row: SFTRow | PreferenceRow) -> str:
    content = {k: v for k, v in asdict(row).items() if k != "line"}
    return json.dumps(content, sort_keys=True, ensure_ascii=False)


def build_dataset(kind: str, records: Iterable[Record], issues: list[Issue] | None = None,
                  name: str = "") -> Dataset:
    """Validate records into a Dataset of `kind` "sft" or "preference"; duplicates are dropped."""
    if kind not in ("sft", "preference"):
        raise DataError(f"Unknown dataset kind {kind!r}; use 'sft' or 'preference'.")
    issues = list(issues or [])
    rows, first_seen = [], {}
    for line, record in records:
        parsed = parse_sft_row(line, record, issues) if kind == "sft" else \
            parse_preference_rows(line, record, issues)
        for row in [parsed] if kind == "sft" else parsed:
            if row is None:
                continue
            key = _key(row)
            if key in first_seen:
                issues.append(Issue(line, "", f"duplicate of line {first_seen[key]}", "dropped"))
                continue
            first_seen[key] = line
            rows.append(row)
    issues.sort(key=lambda issue: issue.line)
    if not rows:
        detail = f"; first problem: {issues[0]}" if issues else ""
        raise DataError(f"No usable {kind} rows in {name or 'the dataset'}{detail}.")
    return Dataset(kind, rows, issues, name)


def load_sft(source: Any, fmt: str | None = None, name: str = "") -> Dataset:
    """Read and validate an SFT dataset from a path, bytes or a list of dicts."""
    records, issues = read_records(source, fmt)
    return build_dataset("sft", records, issues, name or _name_of(source))


def load_preferences(source: Any, fmt: str | None = None, name: str = "") -> Dataset:
    """Read and validate a preference dataset from a path, bytes or a list of dicts."""
    records, issues = read_records(source, fmt)
    return build_dataset("preference", records, issues, name or _name_of(source))


def _name_of(source: Any) -> str:
    return Path(source).stem if isinstance(source, (str, Path)) else ""


# Bundled datasets

def list_bundled() -> list[BundledDataset]:
    """Return the datasets in assets/datasets/ (`<name>.<kind>.jsonl`), sorted by name."""
    found = []
    descriptions = _readme_descriptions()
    for path in sorted(DATASETS_DIR.glob("*.jsonl")):
        name, _, kind = path.stem.rpartition(".")
        if kind in ("sft", "preference"):
            found.append(BundledDataset(name, kind, path, descriptions.get(name, "")))
    return found


def load_bundled(name: str) -> Dataset:
    """Load a bundled dataset by name, such as "arithmetic-truth"."""
    for bundled in list_bundled():
        if bundled.name == name:
            loader = load_sft if bundled.kind == "sft" else load_preferences
            return loader(bundled.path, name=name)
    names = ", ".join(b.name for b in list_bundled())
    raise DataError(f"Unknown bundled dataset {name!r}; choose one of: {names}.")


def _readme_descriptions() -> dict[str, str]:
    """Read each dataset's one-line summary from the `## <name>` sections of the README."""
    readme = DATASETS_DIR / "README.md"
    if not readme.is_file():
        return {}
    found, current = {}, None
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].strip().strip("`")
        elif current and line.strip() and current not in found:
            found[current] = line.strip()
    return found
