"""Text from files, agents, goals and upstreams, made safe to show.

Anything outloop shows was, somewhere, written by someone else: a file name the
agent chose, a goal's output, a branch name, an upstream's error. On a terminal
an escape sequence in it can set the window title, clear the screen, move the
cursor to overwrite a line (a fake "goal met"), or plant a hyperlink; bidi
controls can make a name read differently from what it is ("Trojan source");
in XML most control characters are not even allowed. One cleaning serves
reports and the terminal alike, so the two never disagree about what a name is.
"""

from __future__ import annotations

import re

_ANSI_RE = re.compile(
    r"""
    \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)    # OSC: window titles, hyperlinks
    | \x1b[P^_X][^\x1b]*\x1b\\           # DCS, PM, APC, SOS strings
    | (?:\x1b\[|\x9b)[0-?]*[\x20-/]*[@-~]  # CSI: colours, cursor movement
    | \x1b[\x20-/]*[0-~]                 # two- and three-byte escapes
    """,
    re.VERBOSE,
)
# whatever is left of a sequence cut short loses its ESC (or C1 introducer) to
# _CONTROL_RE, and with it any meaning to a terminal
# Terminal noise (BEL, backspace, NUL padding, stray ESC, C1 controls):
# invisible in every viewer, and most of it is not allowed in XML 1.0.
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Lone surrogates stand for bytes that did not decode; U+FFFE/U+FFFF are
# not characters. Both are illegal in XML, and dropping them silently
# would hide that the output was damaged.
_NOT_CHARACTER_RE = re.compile("[\ud800-\udfff\ufffe\uffff]")
# embeddings, overrides and isolates reorder what follows them on screen
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """Text as a human would read it on a terminal, and legal in XML 1.0.

    ANSI escape sequences and invisible
    control characters are removed, characters that cannot be encoded become
    U+FFFD, and line ends become ``\\n``. Tab and newline stay.
    """
    if _plain(text):
        return text
    text = _ANSI_RE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_RE.sub("", text)
    return _NOT_CHARACTER_RE.sub("\ufffd", text)


def for_terminal(text: str) -> str:
    """``clean_text`` and no bidi controls: what a terminal may be given."""
    if _plain(text):
        return text
    return _BIDI_RE.sub("", clean_text(text))


def _plain(text: str) -> bool:
    """Printable ASCII only: no escape, control, CR, surrogate or bidi character to remove.

    Most of what is shown (run ids, states, numbers, file names) is; a table of a
    hundred runs cleans about a thousand cells, and this test is one C pass where
    the cleaning is five regular expressions.
    """
    return text.isascii() and text.isprintable()


def one_line(text: str) -> str:
    """``for_terminal`` on one line: for a name inside a sentence or a table cell."""
    return " ".join(for_terminal(text).split())
