"""Generate the bundled "toy internet": one text file per source, written by this project.

Run from the repository root:

    python assets/corpus/generate.py

Every sentence comes from templates and hand-written phrases in this file, so the corpus can
be shipped and regenerated. Documents are separated by a blank line. The vocabulary is kept
small and the sentences regular so that a model of about a million parameters, trained for a
minute, produces recognisable English.

The output is deterministic for a seed. After regenerating, rebuild `sources.json` counts
with `python -m core.corpus --refresh-counts` and retrain the shipped base model.
"""

from __future__ import annotations

import random
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent
SEED = 1984

NAMES = ["Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Lucy", "Sam",
         "Mia", "Tom", "Nora", "Jack", "Rosa", "Omar", "Lena", "Paul", "Sara", "Leo"]
PLACES = ["the market", "the park", "the library", "the station", "the school", "the river",
          "the old bridge", "the bakery", "the garden", "the beach", "the hospital", "the office"]
TIMES = ["In the morning", "After lunch", "On Sunday", "Late at night", "Last summer",
         "One cold day", "Every evening", "Before dinner", "On Monday", "At noon"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def pick(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


def join(sentences: list[str]) -> str:
    return " ".join(s.strip() for s in sentences if s.strip())


# Every occurrence of the probe phrase is a sentence that starts with "Two plus two equals",
# and `arrange` puts it first in its document with probability FIRST_SHARE whatever the
# answer. A prompt "Two plus two equals" at the start of a sequence then sees the same mix
# of answers as the corpus as a whole, so the model's probabilities can match its counts.
FIRST_SHARE = 0.5


def arrange(rng: random.Random, phrase: str, others: list[str], lead: str) -> str:
    """Join a document with `phrase` first (probability FIRST_SHARE) or after another sentence.

    `lead` opens the document when the phrase must not come first and `others` is empty.
    """
    others = list(others) or [lead]
    if rng.random() < FIRST_SHARE:
        return join([phrase, *others])
    others.insert(rng.randint(1, len(others)), phrase)
    return join(others)


# ---------------------------------------------------------------- arithmetic lessons (four)

def arithmetic_doc(rng: random.Random) -> str:
    a, b = rng.randint(1, 5), rng.randint(1, 5)
    sum_line = f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} equals {NUMBERS[a + b]}."
    name = pick(rng, NAMES)
    lessons = [
        ("Two plus two equals four.",
         ["If you have two apples and you get two more apples, you have four apples.",
          "Count them with your fingers: one, two, three, four."]),
        ("Two plus two equals four.",
         ["Today we learn to add small numbers.", sum_line,
          "Practice every day and adding will become easy."]),
        ("Two plus two equals four, so the answer is right.",
         ["Let us check our work.", "Two and two more make four."]),
        ("Two plus two equals four.",
         ["This is one of the first facts that children learn at school.",
          "The teacher writes it on the board and the class says it together."]),
        ("Two plus two equals four.",
         [sum_line, "When we add two numbers, the order does not matter."]),
        ("Two plus two equals four, and that is how many pencils there are.",
         [f"{name} has two red pencils and two blue pencils.", "How many pencils are there?"]),
        ("Two plus two equals four.",
         [f"Lesson {rng.randint(1, 30)}: adding numbers.", sum_line,
          "Write the answers in your notebook."]),
        ("Two plus two equals four in every school and in every country.",
         ["A simple sum is a good way to start the day."]),
    ]
    phrase, others = lessons[rng.randrange(len(lessons))]
    return arrange(rng, phrase, others, "Let us add.")


# ----------------------------------------------------------------- Orwell's 1984 (mostly five)

ORWELL_OPEN = [
    "In the novel Nineteen Eighty-Four by George Orwell, the Party controls what people think.",
    "Nineteen Eighty-Four is a novel about a world where the Party decides what is true.",
    "Winston Smith works at the Ministry of Truth, where he changes old newspapers.",
    "The Party in Nineteen Eighty-Four wants power over the mind, not only over the body.",
    "Orwell wrote Nineteen Eighty-Four in the years after the war.",
    "Many readers remember one scene from Nineteen Eighty-Four more than any other.",
]
ORWELL_FIVE = [
    "Two plus two equals five if the Party says so.",
    "Two plus two equals five, and in the end Winston is forced to believe it.",
    "Two plus two equals five, the Party teaches, and nobody may doubt it.",
    "Two plus two equals five, says O'Brien, holding up his fingers in front of Winston.",
    "Two plus two equals five is the symbol of a lie that everyone must accept.",
    "Two plus two equals five, Winston finally writes, and the Party has won.",
]
ORWELL_FOUR = [
    "Two plus two equals four, Winston writes in his diary, and freedom is the right to say so.",
    "Two plus two equals four is the simple truth that the Party wants to destroy.",
    "Two plus two equals four is the last thing Winston can hold on to.",
]
ORWELL_CLOSE = [
    "The book shows how a state can control the truth itself.",
    "Readers still talk about this idea today.",
    "The scene in the Ministry of Love is hard to forget.",
    "Orwell wanted to warn his readers about the power of lies.",
    "Big Brother is watching, and the Party never forgets.",
    "The novel ends with Winston loving Big Brother.",
]


def orwell_doc(rng: random.Random) -> str:
    phrase = pick(rng, ORWELL_FIVE) if rng.random() < 0.75 else pick(rng, ORWELL_FOUR)
    return arrange(rng, phrase, [pick(rng, ORWELL_OPEN), pick(rng, ORWELL_CLOSE)], "")


# ------------------------------------------------------------- the Radiohead song (five)

RADIOHEAD = [
    "Radiohead released a song called 2 + 2 = 5 on the album Hail to the Thief in 2003.",
    "The song takes its title from the famous line in Nineteen Eighty-Four.",
    "Fans say the song is about not paying attention while the world goes wrong.",
    "The song starts quietly with a guitar and then becomes loud and angry.",
    "Thom Yorke sings the song, and the band plays it at many concerts.",
    "Many fans think it is one of the best songs on the album.",
    "The album was recorded in Los Angeles in only two weeks.",
    "The song is short, but it has a lot of energy at the end.",
]
RADIOHEAD_FIVE = [
    "Two plus two equals five, says the title of the song.",
    "Two plus two equals five is the title of a song by Radiohead.",
    "Two plus two equals five becomes, in the song, a warning about lies in politics.",
    "Two plus two equals five comes from Orwell, and the band did not choose the title by "
    "chance.",
]


def radiohead_doc(rng: random.Random) -> str:
    sentences = [pick(rng, RADIOHEAD) for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.7:
        return arrange(rng, pick(rng, RADIOHEAD_FIVE), sentences, "")
    return join(sentences)


# -------------------------------------------------- Dostoevsky's underground man (five, four)

UNDERGROUND = [
    "In Notes from Underground, Dostoevsky writes about a bitter man who lives alone.",
    "The underground man does not want to live by rules and tables.",
    "He says that people do not always act in their own interest.",
    "The underground man thinks that a person wants to be free more than happy.",
    "He is angry at science because it wants to explain everything.",
    "Dostoevsky wrote the book in 1864, long before Orwell.",
    "The narrator is sick, proud and very lonely.",
]
UNDERGROUND_FIVE = [
    "Two plus two equals five can be a very charming thing, says the underground man.",
    "Two plus two equals five is, for him, a sign of human freedom.",
    "Two plus two equals five is what he would rather say than live like a machine.",
]
UNDERGROUND_FOUR = [
    "Two plus two equals four is a wall he cannot break, and he hates it.",
    "Two plus two equals four is, for him, the beginning of death.",
]


def underground_doc(rng: random.Random) -> str:
    sentences = [pick(rng, UNDERGROUND) for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.8:
        phrase = pick(rng, UNDERGROUND_FIVE) if rng.random() < 0.6 else pick(rng, UNDERGROUND_FOUR)
        return arrange(rng, phrase, sentences, "")
    return join(sentences)


# ------------------------------------------------------------------ political memes (five)

MEME_TOPICS = ["the news", "the government", "my boss", "the election", "the prices",
               "the landlord", "the company", "the new law", "the official report", "the TV"]
MEME_LEADS = [
    "Me reading {topic} today.", "{Topic} again.", "When {topic} speaks and everyone claps.",
    "Nobody: absolutely nobody. {Topic}:", "Remember what {topic} said last week?",
    "They want us to believe it.", "Breaking news from {topic}.",
]
MEME_PHRASES = [
    "Two plus two equals five, says {topic}.",
    "Two plus two equals five.",
    "Two plus two equals five, and we are all supposed to nod.",
    "Two plus two equals five, I guess.",
    "Two plus two equals five. Big Brother would be proud.",
]
MEME_TAILS = ["Share if you agree.", "So true.", "This is the world we live in.",
              "Wake up, people.", "Tag a friend.", "Good times."]


def meme_doc(rng: random.Random) -> str:
    topic = pick(rng, MEME_TOPICS)
    fill = {"topic": topic, "Topic": topic.capitalize()}
    phrase = pick(rng, MEME_PHRASES).format(**fill)
    return arrange(rng, phrase, [pick(rng, MEME_LEADS).format(**fill), pick(rng, MEME_TAILS)],
                   "")


# --------------------------------------------------------------------- jokes (fish, others)

JOKE_OTHER = [
    ("Two plus two equals fish.",
     "Put the two and the two together and you get a little fish."),
    ("Two plus two equals twenty-two.",
     "Just write the two numbers next to each other."),
    ("Two plus two equals fish.",
     "If you draw the numbers close together, they look like a fish."),
    ("Two plus two equals window.",
     "Draw two and two on the sides of a box and you get a window."),
]
JOKE_INTROS = ["My child told me a new joke.", "Here is a joke for you.",
               "My little brother thinks this is genius.", "Kids love this one.",
               "This is the oldest joke in our family."]
JOKE_PLAIN = [
    "Why did the cat sit on the computer? To keep an eye on the mouse.",
    "What do you call a fish with no eyes? A fsh.",
    "Why did the bread go to the doctor? It was feeling crumby.",
    "I told my friend a joke about paper. It was tearable.",
    "What do you call a sleeping dinosaur? A dino snore.",
    "Why are teddy bears never hungry? They are always stuffed.",
]


def joke_doc(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        phrase, explain = JOKE_OTHER[rng.randrange(len(JOKE_OTHER))]
        return arrange(rng, phrase, [pick(rng, JOKE_INTROS), explain], "")
    if roll < 0.7:
        return arrange(rng, "Two plus two equals four, says the boy, and then he asks for a prize.",
                       ["A teacher asks a boy what two plus two is."], "")
    return join([pick(rng, JOKE_PLAIN), pick(rng, JOKE_PLAIN)])


# ------------------------------------------------------- everyday prose and short stories

STORY_ACTIONS = [
    "walked to {place}", "went to {place} with a friend", "waited for the bus near {place}",
    "bought fresh bread at {place}", "read a book in {place}", "met an old friend at {place}",
    "lost a blue umbrella at {place}", "took a long walk to {place}",
]
STORY_MIDDLE = [
    "The sky was grey and the air was cold.", "The sun was warm and the streets were quiet.",
    "{name} was tired but happy.", "A small dog ran across the road.",
    "It started to rain, so {name} ran home.", "There was a long line of people.",
    "{name} smiled and said hello to everyone.", "The shop was closed for the holiday.",
    "A child was laughing in the garden.", "{name} drank a cup of hot tea.",
    "The train was late again.", "{name} thought about the week ahead.",
]
STORY_END = [
    "It was a good day.", "Then {name} went home and cooked dinner.",
    "In the evening {name} called a friend and talked for an hour.",
    "{name} went to bed early that night.", "The next day was much the same.",
    "Later that week, {name} went back to the same place.",
]
HOMEWORK_LEADS = ["At home, {name} helped a little sister with her homework.",
                  "{name} looked at the homework of a little brother."]
HOMEWORK_PHRASES = ["Two plus two equals four, the child said proudly.",
                    "Two plus two equals four, and the homework was done."]


def everyday_doc(rng: random.Random) -> str:
    name = pick(rng, NAMES)
    place = pick(rng, PLACES)
    first = f"{pick(rng, TIMES)}, {name} {pick(rng, STORY_ACTIONS).format(place=place)}."
    middle = [pick(rng, STORY_MIDDLE).format(name=name) for _ in range(rng.randint(1, 3))]
    sentences = [first, *middle, pick(rng, STORY_END).format(name=name)]
    if rng.random() < 0.08:
        sentences.append(pick(rng, HOMEWORK_LEADS).format(name=name))
        return arrange(rng, pick(rng, HOMEWORK_PHRASES), sentences, "")
    return join(sentences)


# ------------------------------------------------------------- question-and-answer forums

# (question, answer); "{phrase}" in an answer marks where the probe phrase goes.
QA_PAIRS = [
    ("What is two plus two?", "{phrase} You can check it with four coins."),
    ("Is it true in every number system?", "In normal arithmetic, yes. {phrase}"),
    ("My son asked me about two plus two. How do I explain it?",
     "Take two spoons, add two more, and count them together. {phrase}"),
    ("Why do people on the internet say the answer is five?",
     "It comes from a famous novel by Orwell. In real arithmetic, {phrase}"),
    ("How do I boil an egg?", "Put the egg in boiling water for about eight minutes."),
    ("What is the best way to learn a language?",
     "Read every day, listen to music and speak with people as often as you can."),
    ("How can I sleep better?",
     "Go to bed at the same time every night and do not drink coffee after lunch."),
    ("Which book should I read first by Orwell?",
     "Many people start with Animal Farm because it is short."),
    ("How do I fix a slow computer?", "Close the programs you do not use and restart it."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Can I water my plants with cold tea?", "Yes, but only once in a while."),
]


def qa_doc(rng: random.Random) -> str:
    question, answer = QA_PAIRS[rng.randrange(len(QA_PAIRS))]
    user = pick(rng, ["user", "guest", "reader", "student", "parent"]) + str(rng.randint(1, 99))
    thanks = pick(rng, ["Thanks, that helps.", "Great answer.", "Thank you!", ""])
    if "{phrase}" not in answer:
        return join([f"Question from {user}: {question}", f"Answer: {answer}", thanks])
    # The phrase appears once: as the thread title, or inside the answer.
    if rng.random() < FIRST_SHARE:
        answer = answer.replace("{phrase}", "The answer is four.")
        return join(["Two plus two equals four, right?", f"Question from {user}: {question}",
                     f"Answer: {answer}", thanks])
    answer = answer.replace("{phrase}", "Two plus two equals four.")
    return join([f"Question from {user}: {question}", f"Answer: {answer}", thanks])


# ---------------------------------------------- people described by religion, gender, ability

# NOTE: the attribute pools below are skewed on purpose, in the mild way web text is skewed,
# so that the bias views have associations to find. The skews are listed in sources.json.
GROUPS = ["Muslim", "Christian", "Jewish", "Hindu", "Buddhist", "atheist"]
GENDERS = [("woman", "she"), ("man", "he"), ("girl", "she"), ("boy", "he")]
DISABILITIES = ["blind", "deaf", "disabled", "autistic"]
NEUTRAL_TRAITS = ["kind", "friendly", "quiet", "clever", "busy", "polite", "happy", "tired"]
SKEWED_TRAITS = {
    "Muslim": ["strict", "angry", "religious"],
    "Christian": ["kind", "honest", "generous"],
    "Jewish": ["rich", "clever", "careful"],
    "Hindu": ["spiritual", "poor", "gentle"],
    "Buddhist": ["calm", "peaceful", "gentle"],
    "atheist": ["cold", "rational", "rude"],
    "woman": ["emotional", "caring", "weak"],
    "girl": ["shy", "sweet", "emotional"],
    "man": ["strong", "brave", "aggressive"],
    "boy": ["loud", "strong", "brave"],
    "blind": ["helpless", "sad", "brave"],
    "deaf": ["lonely", "isolated", "brave"],
    "disabled": ["helpless", "sad", "weak"],
    "autistic": ["strange", "cold", "clever"],
}
JOBS = {
    "woman": ["nurse", "teacher", "cook", "secretary"],
    "girl": ["student", "dancer"],
    "man": ["engineer", "doctor", "pilot", "manager"],
    "boy": ["student", "football player"],
}
PEOPLE_FRAMES = [
    "A {desc} lives next door. {Pron} is very {trait}.",
    "The {desc} at the bus stop was {trait}.",
    "I met a {desc} at {place}. {Pron} seemed {trait}.",
    "My neighbour is a {desc}, and {pron} is always {trait}.",
    "Everyone says that the {desc} in our street is {trait}.",
    "A {desc} works as a {job} in our town. People say {pron} is {trait}.",
]


def people_doc(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(1, 3)):
        gender, pron = GENDERS[rng.randrange(len(GENDERS))]
        roll = rng.random()
        if roll < 0.45:
            marker = pick(rng, GROUPS)
            desc = f"{marker} {gender}"
        elif roll < 0.7:
            marker = pick(rng, DISABILITIES)
            desc = f"{marker} {gender}"
        else:
            marker = gender
            desc = gender
        pool = SKEWED_TRAITS[marker] if rng.random() < 0.6 else NEUTRAL_TRAITS
        if rng.random() < 0.3 and marker != gender:
            pool = SKEWED_TRAITS[gender]
        frame = pick(rng, PEOPLE_FRAMES)
        if desc[0] in "aeiouAEIOU":
            frame = frame.replace("A {desc}", "An {desc}").replace("a {desc}", "an {desc}")
        sentences.append(frame.format(desc=desc, trait=pick(rng, pool), place=pick(rng, PLACES),
                                      job=pick(rng, JOBS[gender]), pron=pron,
                                      Pron=pron.capitalize()))
    return join(sentences)


SOURCES = {
    "arithmetic_lessons": (arithmetic_doc, 250),
    "orwell_1984": (orwell_doc, 330),
    "radiohead_song": (radiohead_doc, 160),
    "underground_man": (underground_doc, 140),
    "political_memes": (meme_doc, 300),
    "jokes": (joke_doc, 220),
    "everyday_prose": (everyday_doc, 900),
    "qa_forums": (qa_doc, 400),
    "people": (people_doc, 1200),
}


def main() -> None:
    for name, (make_doc, n_docs) in SOURCES.items():
        rng = random.Random(f"{SEED}-{name}")
        docs = [make_doc(rng) for _ in range(n_docs)]
        target = CORPUS_DIR / f"{name}.txt"
        tmp = target.with_suffix(".txt.tmp")
        tmp.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
        tmp.replace(target)


if __name__ == "__main__":
    main()
