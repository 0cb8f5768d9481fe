"""Small HTML renderers for the pages: tokens coloured by log-probability."""

from __future__ import annotations

import html
import math

# A token whose log-prob is at or below this shows in the strongest colour.
LOGP_FLOOR = -8.0


def _token_style(logp: float) -> str:
    surprise = min(max(-logp / -LOGP_FLOOR, 0.0), 1.0)  # 0 = expected, 1 = very surprising
    return f"background: rgba(240, 62, 62, {0.08 + 0.72 * surprise:.2f}); border-radius: 3px;"


def tokens_html(tokens: list[str], logps: list[float]) -> str:
    """Return HTML that shows each token with a red background as strong as its surprise.

    Hovering a token shows its probability. Whitespace and newlines are kept visible.
    """
    spans = []
    for token, logp in zip(tokens, logps):
        text = html.escape(token).replace("\n", "↵<br>")
        title = f"p = {math.exp(logp):.3g} (log-prob {logp:.2f})"
        spans.append(f'<span style="{_token_style(logp)}" title="{title}">{text}</span>')
    body = "".join(spans) or "<em>(no tokens generated)</em>"
    return f'<div style="white-space: pre-wrap; line-height: 1.9; font-size: 0.95rem;">{body}</div>'


def legend_html() -> str:
    """Return a one-line legend for `tokens_html` colours."""
    cells = []
    for logp, label in [(-0.05, "p ≈ 0.95"), (-1.0, "p ≈ 0.37"), (-3.0, "p ≈ 0.05"),
                        (LOGP_FLOOR, "p ≤ 0.0003")]:
        cells.append(f'<span style="{_token_style(logp)} padding: 0 6px;">{label}</span>')
    return "Token colour: " + " ".join(cells)
