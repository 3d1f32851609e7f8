"""Text a reader does not see but a model does: invisible fillers and variation
selectors used to smuggle data, told apart from the selectors ordinary emoji carry."""

from __future__ import annotations

import re
import unicodedata

FILLERS = frozenset(
    "\u115f\u1160"  # Hangul choseong and jungseong fillers
    "\u3164\uffa0"  # Hangul filler, halfwidth Hangul filler
    "\u2800"  # braille pattern blank
    "\u180e"  # Mongolian vowel separator
    "\u17b4\u17b5"  # Khmer inherent vowels
    "\u034f"  # combining grapheme joiner
)
"""Characters that draw as nothing yet are letters or symbols to Unicode (so a test of
categories alone lets them through)."""
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me"})

_SUPPLEMENT = re.compile("[\U000e0100-\U000e01ef]")
_SELECTOR = re.compile("[\ufe00-\ufe0f]")
_RUN = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{2,}")
_PRESENTATION = frozenset("\ufe0e\ufe0f")
"""Text and emoji presentation: the only selectors emoji take, one after the base."""
_KEYCAP_AND_PUNCT = frozenset("0123456789#*\u203c\u2049\u3030\u303d")


def visible(text: str) -> str:
    """``text`` without what draws as nothing (format and control characters, spaces,
    lone combining marks, fillers)."""
    return "".join(
        ch
        for ch in text
        if ch not in FILLERS and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
    )


def hidden_selectors(text: str) -> str | None:
    """Why ``text`` hides data in variation selectors, or None: selectors from the
    supplement (U+E0100-U+E01EF), a run of selectors, or a selector on a character
    that is not an emoji. ❤️ (U+2764 U+FE0F) and keycaps such as 1️⃣ pass."""
    if _SUPPLEMENT.search(text):
        return "variation selectors from the supplement (U+E0100-U+E01EF)"
    if _RUN.search(text):
        return "a run of variation selectors"
    for match in _SELECTOR.finditer(text):
        start = match.start()
        base = text[start - 1] if start else ""
        if match.group() not in _PRESENTATION or not _emoji_base(base):
            shown = f"U+{ord(base):04X}" if base else "the start of the text"
            return f"a variation selector on {shown}, which is not an emoji"
    return None


def _emoji_base(ch: str) -> bool:
    """Whether ``ch`` can take an emoji or text presentation selector: symbols (other
    symbols, and math symbols beyond Latin-1 such as arrows), keycap bases and the few
    emoji punctuation marks."""
    if not ch:
        return False
    category = unicodedata.category(ch)
    return category == "So" or (category == "Sm" and ord(ch) > 0xFF) or ch in _KEYCAP_AND_PUNCT
