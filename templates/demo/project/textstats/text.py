"""Word counts and URL slugs."""

from __future__ import annotations

import re
import unicodedata

# A word is a run of letters or digits; an apostrophe inside it ("don't")
# keeps it one word, a hyphen ("well-known") splits it in two.
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def word_count(text: str) -> int:
    """Count the words in ``text``."""
    return len(_WORD.findall(text))


def slugify(title: str, max_length: int = 60) -> str:
    """Turn a title into a URL slug: ``"Hello, World!"`` -> ``"hello-world"``.

    Accents are dropped, every run of other characters becomes one hyphen,
    and the slug never starts or ends with a hyphen.
    """
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower())
    return slug[:max_length]
