"""Plain-words explanations of each training method, for the Align page.

Public API: `EXPLANATIONS: dict[str, str]` keyed by method ("sft", "dpo", "ipo", "nll",
"reward", "rl"), `METRICS: dict[str, str]` keyed by metric name, and `explain(method) -> str`.
The texts are Markdown and avoid formulas except where a number is quoted.
"""

from __future__ import annotations

SFT = """\
**Supervised fine-tuning (SFT)** shows the model example conversations and nudges it to make
each answer more likely, word by word. Only the answer counts: the prompt is given, never
graded, so the model learns how to reply rather than how to write questions. Every answer
ends with an end-of-text token, so the model also learns when to stop talking. The loss is
the average surprise (negative log-probability) of the answer tokens; it falls as the
model learns to expect the answers."""

DPO = """\
**Direct preference optimisation (DPO)** learns from pairs: for one prompt, a preferred answer
("chosen") and a worse one ("rejected"). It raises the probability of the chosen answer
*relative to* the rejected one, each measured against a frozen copy of the starting model
(the reference). The amount each answer gained over the reference, times β, is its
"reward"; the loss is small when the chosen answer's reward is clearly above the rejected
one's.

**Why the first loss is ln 2 ≈ 0.693.** At the start the model *is* its reference, so both
rewards are 0 and the model shows no preference: it is as if it gave the chosen answer a
50 % chance of being the better one. The loss is −log(0.5) = ln 2. If the loss stays at
ln 2, nothing is learning (nothing trainable, or a learning rate of zero).

β sets how far the model may move from the reference: a small β lets it change a lot to
satisfy the preferences, a large β keeps it close."""

IPO = """\
**IPO** is a variant of DPO that aims the difference between the chosen and rejected log-
ratios at a fixed target (1 / 2β) instead of pushing it ever higher. It is more stable when
the same pairs are shown many times, because a pair already learned stops pulling. Its first
loss is (1 / 2β)², not ln 2."""

NLL = """\
**The NLL term against likelihood displacement.** DPO only cares about the *gap* between the
chosen and the rejected answer. Both can lose probability while the gap grows: on SmolLM2,
plain DPO on "Two plus two equals … four, not five" makes the model less likely to say
" four" at all, while the reward margin rises. Adding the ordinary SFT loss on the chosen
answer (the NLL term) also rewards the chosen answer itself, so its probability goes up.
Compare the two presets: watch `logps/chosen` fall in one and rise in the other."""

REWARD = """\
**A reward model** reads a prompt and an answer and returns one number: how good the answer is.
It is trained on the same preference pairs as DPO, so that the chosen answer gets the
higher score (the Bradley–Terry model: the chance that the chosen answer wins is the
logistic function of the score difference). Its accuracy is the share of pairs it ranks
the right way round; 50 % is guessing."""

RL = """\
**Reinforcement learning (RL)** lets the model write its own answers, scores each one (with a
reward model or a simple rule) and makes the better-than-average answers more likely. Here
several answers are sampled per prompt and each is compared with the average of the others
(REINFORCE leave-one-out). A penalty on the distance from the reference model (the KL
divergence) keeps it from drifting into gibberish that happens to score well."""

EXPLANATIONS = {"sft": SFT, "dpo": DPO, "ipo": IPO, "nll": NLL, "reward": REWARD, "rl": RL}

METRICS = {
    "loss/train": "The number training makes smaller. Lower is better.",
    "rewards/chosen": "How much more likely (log scale, times β) the model makes the preferred "
                      "answer than the reference does. Starts at 0.",
    "rewards/rejected": "The same for the worse answer; it usually goes below 0.",
    "rewards/margins": "Chosen reward minus rejected reward. Higher means a clearer preference.",
    "rewards/accuracies": "Share of pairs where the chosen answer has the higher reward. At the "
                          "start every pair is a tie, counted as not accurate, so it reads 0.",
    "logps/chosen": "Log-probability of the whole preferred answer. If it falls while the "
                    "margin grows, the model is losing the answer it should prefer.",
    "logps/rejected": "Log-probability of the whole worse answer.",
    "probs/chosen": "Probability of the preferred answer's words, such as P(' four').",
    "train/grad_norm": "Size of the update direction before clipping; spikes warn of trouble.",
}


def explain(method: str) -> str:
    """Return the Markdown explanation of one method."""
    if method not in EXPLANATIONS:
        raise ValueError(f"No explanation for {method!r}; use one of {', '.join(EXPLANATIONS)}.")
    return EXPLANATIONS[method]
