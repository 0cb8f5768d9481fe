"""Regenerate assets/prompts/prompts.jsonl: 1,024 prompts for the collapse and diversity pages.

Half are openings of pretraining-style text (a news lede, a recipe, a story) and half are
chat-style questions a user might ask. Each category has hand-written templates and slot
fillers; the script forms every combination, draws a fixed number per category with a
seeded random generator, and interleaves text and chat prompts so that any prefix of the
file (the first 256 prompts, say) is balanced across kinds and categories.

    python assets/prompts/make_prompts.py
"""

from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path

SEED = 2026
PER_CATEGORY = 64  # 8 categories per kind x 64 = 512 prompts per kind
OUTPUT = Path(__file__).resolve().parent / "prompts.jsonl"

PLACES = ["the harbour town", "a mountain village", "the old mill district", "a desert city",
          "the river delta", "a northern island", "the capital", "a farming valley"]
PEOPLE = ["a retired teacher", "the young mayor", "a night-shift nurse", "two brothers",
          "an old fisherman", "a first-year student", "the baker", "a travelling musician"]
THINGS = ["bread", "bridges", "bees", "clocks", "glaciers", "maps", "violins", "volcanoes",
          "coffee", "printing", "tides", "salt"]
FOODS = ["lentil soup", "apple cake", "roast vegetables", "fish stew", "flatbread",
         "tomato sauce", "rice pudding", "onion tart", "mushroom risotto", "bean chili",
         "pancakes", "potato salad"]
SPORTS = ["football", "chess", "rowing", "cycling", "tennis", "basketball", "athletics",
          "cricket", "swimming", "climbing", "table tennis", "volleyball"]
ERAS = ["the Bronze Age", "the Roman Empire", "the Middle Ages", "the Renaissance",
        "the eighteenth century", "the industrial revolution", "the 1920s", "the Cold War",
        "ancient Egypt", "the Viking Age"]
TOPICS = ["photosynthesis", "gravity", "inflation", "vaccines", "the water cycle",
          "black holes", "plate tectonics", "memory", "electricity", "evolution",
          "climate change", "sleep"]

TEXT_TEMPLATES: dict[str, tuple[list[str], list[list[str]]]] = {
    "news": (["Officials in {0} announced on Tuesday that", "Residents of {0} woke up to",
              "A new report on {0} shows that", "After months of debate, the council of {0}",
              "Police in {0} are asking for help after", "Schools in {0} will close early because",
              "The election in {0} was decided by", "Heavy rain in {0} has"], [PLACES]),
    "fiction": (["The door creaked open and {0} saw", "Nobody in {1} remembered the night when",
                 "It was raining when {0} finally", "{0} had never told anyone about",
                 "On the last day of summer, {0}", "The letter arrived on a Monday, and {0}",
                 "Long ago in {1}, there lived", "When the lights went out, {0}"],
                [PEOPLE, PLACES]),
    "science": (["Recent studies of {0} suggest that", "The basic principle behind {0} is",
                 "Scientists have long wondered why {0}", "To understand {0}, we first need",
                 "One surprising fact about {0} is that", "Early experiments on {0} showed",
                 "The textbook explanation of {0} leaves out"], [TOPICS]),
    "history": (["During {0}, ordinary people", "The economy of {0} depended on",
                 "Historians still argue about how {0}", "Trade in {1} during {0}",
                 "Few records survive from {0}, but", "The rise of {1} in {0} began with",
                 "Daily life in {0} was shaped by"], [ERAS, THINGS]),
    "recipe": (["To make a simple {0}, start by", "This {0} recipe serves four and takes",
                "My grandmother's {0} always began with", "The secret to a good {0} is",
                "Ingredients for {0}: two cups of", "Preheat the oven and prepare the {0} by",
                "Leftover {0} keeps well if you"], [FOODS]),
    "sports": (["In the final minutes of the {0} match,", "The {0} season opened with",
                "Coaches in {0} often say that", "The history of {0} in {1} goes back to",
                "Training for {0} at a high level requires", "Fans of {0} were stunned when",
                "The rules of {0} changed in"], [SPORTS, PLACES]),
    "letters": (["Dear Sir or Madam, I am writing about the {0} that",
                 "Dear Grandma, thank you so much for the {0}",
                 "To whom it may concern: regarding the {0},", "Hi Sam, just a quick note about the {0}",
                 "Dear neighbours, as many of you know, the {0}",
                 "My dearest friend, since you left I keep thinking of the {0}",
                 "Dear editor, your article about {0}"], [THINGS]),
    "encyclopedia": (["The story of {0} begins", "The word for {0} in many languages",
                      "People have relied on {0} since", "The study of {0} is called",
                      "In many cultures, the image of {0} stands for",
                      "Compared with earlier times, modern {0}", "The largest collection of {0}"],
                     [THINGS]),
}

CHAT_TEMPLATES: dict[str, tuple[list[str], list[list[str]]]] = {
    "explain": (["Can you explain {0} in simple terms?", "Why does {0} matter?",
                 "What is the most common misconception about {0}?",
                 "How would you explain {0} to a ten-year-old?", "What causes {0}?",
                 "Is it true that scientists fully understand {0}?",
                 "What would happen if {0} stopped working?"], [TOPICS]),
    "advice": (["How can I get better at {0}?", "I want to start {0} but I am nervous. Any tips?",
                "What is a good first step for someone learning {0}?",
                "My friend says {0} is a waste of time. Is that fair?",
                "How much time should I spend on {0} each week?",
                "What equipment do I need for {0}?", "Is {0} a good hobby for an older person?"],
               [SPORTS]),
    "cooking": (["What can I use instead of eggs in {0}?", "How do I stop my {0} from burning?",
                 "Is {0} healthy?", "Can I freeze {0}?", "What wine goes with {0}?",
                 "Why did my {0} turn out bland?", "How do I make {0} for a large group?"],
                [FOODS]),
    "history_q": (["What was life like for children in {0}?", "Who had power in {0}?",
                   "What did people eat in {0}?", "Why did {0} come to an end?",
                   "What is the most important invention of {0}?",
                   "How do we know what happened in {0}?", "Were women educated in {0}?"],
                  [ERAS]),
    "opinion": (["Is it ever right to break a promise about {0}?",
                 "Should {0} be taught in every school?", "Are {0} overrated?",
                 "What is the best argument against {0}?", "Do you think {0} will matter in 100 years?",
                 "Which is more important, {0} or {1}?", "Why do people disagree about {0}?"],
                [THINGS, TOPICS]),
    "creative": (["Write a short poem about {0}.", "Tell me a story about {0} and {1}.",
                  "Give me a riddle whose answer is {1}.", "Describe {0} in three sentences.",
                  "Invent a holiday that celebrates {1}.", "Write a haiku about {0} at night.",
                  "Write the opening line of a novel set in {0}."], [PLACES, THINGS]),
    "practical": (["How do I write a polite complaint to {0}?",
                   "What should I pack for a week in {1}?", "How do I ask {0} for a favour?",
                   "What is a good gift for {0}?", "How do I plan a day trip to {1}?",
                   "How can I help {0} who feels lonely?", "What should I say to {0} who is upset?",
                   "Where is a quiet place to read in {1}?", "How do I introduce {0} to {1}?"],
                  [PEOPLE, PLACES]),
    "numbers": (["What is {0} plus {1}?", "Is {0} a prime number?", "What is {0} times {1}?",
                 "How many minutes are in {0} hours?", "What is half of {1}?",
                 "If I have {0} apples and eat {1}, how many are left?",
                 "Which is larger, {0} or {1}?"],
                [[str(n) for n in (3, 7, 12, 19, 25, 42, 64, 99)],
                 [str(n) for n in (2, 5, 8, 11, 16, 30, 48, 100)]]),
}


def _expand(templates: list[str], slots: list[list[str]]) -> list[str]:
    texts = set()
    for template in templates:
        for values in itertools.product(*slots):
            text = template.format(*values)
            texts.add(text[0].upper() + text[1:])
    return sorted(texts)


def build_prompts(seed: int = SEED) -> list[dict]:
    """Return the interleaved prompt list: text, chat, text, chat, ... with categories."""
    rng = random.Random(seed)
    by_kind = {}
    for kind, table in (("text", TEXT_TEMPLATES), ("chat", CHAT_TEMPLATES)):
        rows = []
        for category, (templates, slots) in table.items():
            pool = _expand(templates, slots)
            if len(pool) < PER_CATEGORY:
                raise ValueError(f"Category {category!r} yields {len(pool)} prompts, "
                                 f"fewer than {PER_CATEGORY}; add templates or fillers.")
            rows += [{"text": t, "kind": kind, "category": category}
                     for t in rng.sample(pool, PER_CATEGORY)]
        rng.shuffle(rows)
        by_kind[kind] = rows
    interleaved = [row for pair in zip(by_kind["text"], by_kind["chat"]) for row in pair]
    for index, row in enumerate(interleaved):
        row["id"] = index
    return interleaved


def main() -> None:
    rows = build_prompts()
    tmp = OUTPUT.with_name(f".{OUTPUT.name}.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, OUTPUT)


if __name__ == "__main__":
    main()
