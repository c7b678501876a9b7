"""textstats: small helpers for counting, summarising and tidying text."""

from textstats.roman import to_roman
from textstats.stats import mean, median
from textstats.text import slugify, word_count

__all__ = ["mean", "median", "slugify", "to_roman", "word_count"]
