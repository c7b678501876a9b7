"""Parsers and checks for the scalar values of a loop file, independent of YAML.

Each check has two halves kept side by side: a regular expression that the
JSON Schema ships (so an editor flags the same mistakes) and a Python function
that says *which* rule a bad value broke. The loader uses the functions; the
regexes are tested against them so the two cannot drift apart.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Sequence

from outloop_cli.config.model import BRANCH_PLACEHOLDERS, PLACEHOLDERS


class BadValue(ValueError):
    """A value that does not fit; ``str(exc)`` is the message, ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def anchored(pattern: str) -> str:
    """A pattern as JSON Schema wants it: ``pattern`` is a search, not a full match."""
    return f"^{pattern}$"


def suggest(word: str, choices: Sequence[str]) -> str | None:
    """The closest of ``choices`` to ``word``, if any is close enough to be a typo."""
    import difflib  # only needed on the error path

    by_lower = {c.lower(): c for c in choices}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


# --- durations ----------------------------------------------------------------

_NUM = r"[0-9]+(?:\.[0-9]+)?"
# Units in descending order, each at most once, so `1h30m` reads one way only.
DURATION_PATTERN = rf"(?:{_NUM}|(?=[0-9])(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?(?:{_NUM}ms)?)"
# A duration that is not zero: at least one non-zero digit somewhere.
POSITIVE_DURATION_PATTERN = rf"(?=[^1-9]*[1-9]){DURATION_PATTERN}"
DURATION_HINT = "write a duration like 90s, 15m, 2h, 1h30m or 500ms (a plain number is seconds)"
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(rf"({_NUM})(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# Timeouts end up in select() and friends, which refuse absurd values with an
# OverflowError; no loop needs to wait longer than a year for anything.
MAX_DURATION = 365 * 24 * 3600.0


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text``: ``90s``, ``15m``, ``2h``, ``1h30m``, ``500ms`` or a number.

    Returns a finite number from 0 to :data:`MAX_DURATION`; whether zero is
    allowed is the caller's rule. Raises :class:`BadValue` (a ``ValueError``)
    for anything else.
    """
    # bool is an int subclass; `timeout: yes` must not mean one second
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise BadValue(f"expected a duration, got {text!r}", DURATION_HINT)
    if isinstance(text, str) and text.strip().startswith("-"):
        raise BadValue(f"a duration must not be negative, got {text!r}", DURATION_HINT)
    if isinstance(text, str) and not _DURATION_RE.fullmatch(text):
        raise BadValue(f"expected a duration, got {text!r}", DURATION_HINT)
    try:
        if isinstance(text, str):
            parts = _DURATION_PART_RE.findall(text)
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts) if parts else float(text)
        else:
            seconds = float(text)
    except OverflowError:  # float() of a 400-digit int
        seconds = math.inf
    if math.isnan(seconds):
        raise BadValue(f"expected a duration, got {text!r}", DURATION_HINT)
    if seconds < 0:
        raise BadValue(f"a duration must not be negative, got {text!r}", DURATION_HINT)
    if seconds > MAX_DURATION:
        raise BadValue(
            f"{_shorten(str(text))} is longer than a year",
            "a limit that long is no limit: leave the key out, or write null where allowed",
        )
    return seconds


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _format_number(value: float) -> str:
    # 15 significant digits hide float noise such as 30.099999999999994
    return format(value, ".15g")


def format_duration(seconds: float) -> str:
    """The shortest form :func:`parse_duration` reads back: ``1h30m``, ``1m30s``, ``2.5s``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{_format_number(seconds * 1000)}ms"
    whole = int(seconds)
    fraction = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs or fraction:
        out += f"{_format_number(secs + fraction)}s"
    return out


# --- sizes --------------------------------------------------------------------

SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
# Longest first so that `KiB` is not read as `K` + junk by the regex engine.
_SIZE_UNIT_ALT = "|".join(sorted(SIZE_UNITS, key=len, reverse=True))
SIZE_PATTERN = rf"[0-9]+ ?(?:{_SIZE_UNIT_ALT})?"
POSITIVE_SIZE_PATTERN = rf"(?=[^1-9]*[1-9]){SIZE_PATTERN}"
SIZE_HINT = (
    "write a whole number of bytes or one with a unit: 500KB, 5MB, 1GiB "
    "(KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)"
)
_SIZE_RE = re.compile(rf"([0-9]+) ?({_SIZE_UNIT_ALT})?")


def parse_size(text: str | int) -> int:
    """Bytes in ``text``: an integer, or ``500KB``, ``5MB``, ``1GiB`` and the like (≥ 0)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise BadValue(f"expected a size, got {text!r}", SIZE_HINT)
    if isinstance(text, int):
        if text < 0:
            raise BadValue(f"a size must not be negative, got {text}", SIZE_HINT)
        return text
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        if text.strip().startswith("-"):
            raise BadValue(f"a size must not be negative, got {text!r}", SIZE_HINT)
        if re.fullmatch(r"[0-9]*\.[0-9]+ ?[A-Za-z]*", text):
            raise BadValue(
                f"a size must be a whole number, got {text!r}",
                "use a smaller unit: 1500KB rather than 1.5MB",
            )
        unit = re.sub(r"^[0-9. ]+", "", text)
        if unit and unit != text:
            close = suggest(unit, list(SIZE_UNITS))
            hint = f"did you mean `{close}`? " + SIZE_HINT if close else SIZE_HINT
            raise BadValue(f"unknown size unit {unit!r} in {text!r}", hint)
        raise BadValue(f"expected a size, got {text!r}", SIZE_HINT)
    number, unit = match.groups()
    return int(number) * SIZE_UNITS[unit or "B"]


def format_size(size: int) -> str:
    """``5242880`` → ``5MiB``, ``500000`` → ``500KB``: the unit that divides it exactly."""
    if size < 0:
        raise ValueError(f"cannot format {size!r} as a size")
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
        factor = SIZE_UNITS[unit]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# --- names --------------------------------------------------------------------

ENV_NAME_PATTERN = r"(?!OUTLOOP_)[A-Za-z_][A-Za-z0-9_]*"
RESERVED_ENV_PREFIX = "OUTLOOP_"
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env_name(text: str) -> str:
    if not _ENV_NAME_RE.fullmatch(text):
        raise BadValue(
            f"{text!r} is not a valid environment variable name",
            "use letters, digits and underscores, not starting with a digit",
        )
    if text.startswith(RESERVED_ENV_PREFIX):
        raise BadValue(
            f"{text!r} is reserved: names starting with {RESERVED_ENV_PREFIX} belong to outloop",
            "pick another name; outloop's own variables (and CI secrets) are never passed on",
        )
    return text


# Variables the runner sets for the agent and the goal (or that decide which
# repository, config and credentials git uses): a loop file may not set them in
# `env`, nor take them from outloop's environment with `pass_env` (the GIT_ ones),
# nor point a credential's `env` at them.
RUNNER_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "OLDPWD",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
)
RUNNER_GIT_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_ASKPASS",
    "GIT_TERMINAL_PROMPT",
    "SSH_ASKPASS",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
)
_RUNNER_GIT_PREFIXES = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")


_RUNNER_NAMES = "|".join((*RUNNER_ENV, *RUNNER_GIT_ENV))
_RUNNER_PREFIXES = "|".join(_RUNNER_GIT_PREFIXES)
# for the JSON Schema: the names ``env`` may not set (case matters, as in the environment)
LOOP_ENV_NAME_PATTERN = rf"(?!(?:{_RUNNER_NAMES})$)(?!{_RUNNER_PREFIXES}){ENV_NAME_PATTERN}"
PASS_ENV_NAME_PATTERN = (
    rf"(?!(?:{'|'.join(RUNNER_GIT_ENV)})$)(?!{_RUNNER_PREFIXES}){ENV_NAME_PATTERN}"
)


def runner_env_problem(name: str) -> BadValue | None:
    """Why a loop file may not set ``name`` for the agent or the goal, or None."""
    if name in RUNNER_ENV:
        return BadValue(
            f"{name!r} is set by outloop for the agent and the goal, not by the loop",
            "outloop gives them PATH, HOME, USER, SHELL and TMPDIR itself (the sandbox its own); "
            "to find a program, give `agent.command` its full path",
        )
    if name in RUNNER_GIT_ENV or name.startswith(_RUNNER_GIT_PREFIXES):
        return BadValue(
            f"{name!r} decides which repository, config or credentials git uses; "
            "outloop sets git up for the run itself",
            "leave it out: the agent's git works on the run's worktree, with outloop's "
            "credential helper when the loop asks for `via: git`",
        )
    return None


def check_loop_env_name(text: str) -> str:
    """A variable a loop may set for the agent or the goal (``env``, ``pass_env``)."""
    check_env_name(text)
    problem = runner_env_problem(text)
    if problem is not None:
        raise problem
    return text


def check_pass_env_name(text: str) -> str:
    """A variable a loop may take from outloop's environment: no git plumbing ones."""
    check_env_name(text)
    problem = runner_env_problem(text)
    if problem is not None and text not in RUNNER_ENV:
        raise problem
    return text


CREDENTIAL_NAME_PATTERN = r"[a-z0-9][a-z0-9_-]*"
LOOP_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_LOOP_NAME_RE = re.compile(LOOP_NAME_PATTERN)


def loop_name_problem(name: str) -> str | None:
    """Why ``name`` (a loop file's stem) cannot name a loop, or None when it can."""
    if not _LOOP_NAME_RE.fullmatch(name):
        return (
            f"loop name {name!r} (the file name without .yml) must start with a letter or "
            "digit and contain only letters, digits, '.', '_' and '-'"
        )
    # the name goes into branch names, so git's own rules apply
    if name.endswith(".lock"):
        return f"loop name {name!r} must not end in '.lock'"
    if ".." in name:
        return f"loop name {name!r} must not contain '..'"
    return None


# --- templates ----------------------------------------------------------------

_TEMPLATE_TOKEN_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def template_pattern(names: Sequence[str]) -> str:
    alternatives = "|".join(sorted(names, key=len, reverse=True))
    return rf"(?:[^{{}}]|\{{\{{|\}}\}}|\{{(?:{alternatives})\}})*"


def check_template(text: str, names: Sequence[str] = PLACEHOLDERS) -> str:
    """Check ``{name}`` placeholders in ``text``; ``{{`` and ``}}`` are literal braces."""
    allowed = ", ".join(f"{{{n}}}" for n in names)
    for match in _TEMPLATE_TOKEN_RE.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise BadValue(
                f"unmatched {token!r} in {text!r}",
                "write {{ or }} for a literal brace; placeholders are " + allowed,
            )
        if name not in names:
            close = suggest(name, names)
            hint = f"did you mean `{{{close}}}`? " if close else ""
            raise BadValue(
                f"unknown placeholder `{{{name}}}` in {text!r}",
                hint + f"placeholders are {allowed}; write {{{{ for a literal brace",
            )
    return text


# --- git branch names ------------------------------------------------------------

# A run id as the engine makes them; only needed to try a template out.
SAMPLE_RUN_ID = "20250101-000000-0a1b2c"

_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def branch_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid branch name by ``git check-ref-format --branch``."""
    if not name:
        return "it is empty"
    if name in ("@", "HEAD"):
        return f"{name!r} is reserved by git"
    if name.startswith("-"):
        return "it starts with '-'"
    bad = _REF_BAD_CHARS.search(name)
    if bad:
        return f"it contains {bad.group(0)!r} (no spaces, control characters or ~ ^ : ? * [ \\)"
    if name.startswith("/") or name.endswith("/"):
        return "it starts or ends with '/'"
    if "//" in name:
        return "it contains '//'"
    if ".." in name:
        return "it contains '..'"
    if "@{" in name:
        return "it contains '@{'"
    if name.endswith("."):
        return "it ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"the part {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"the part {part!r} ends with '.lock'"
    return None


_BRANCH_CHAR = r"[^\x00-\x20\x7f~^:?*\[\\{}]"
# The template's own text must obey the ref rules; placeholders become safe words.
BRANCH_TEMPLATE_PATTERN = (
    r"(?=.*\{run\})(?![./-])(?!.*(?:\.\.|//|/\.|\.lock(?:/|$)|[./]$))"
    rf"(?:{_BRANCH_CHAR}|\{{(?:loop|run)\}})+"
)
_BRANCH_TOKEN_RE = re.compile(r"\{([^{}]*)\}|[{}]")


def check_branch_template(text: str, loop: str) -> str:
    """Check a ``branch:`` template and the branch name it gives for loop ``loop``."""
    allowed = " and ".join(f"{{{n}}}" for n in BRANCH_PLACEHOLDERS)
    for match in _BRANCH_TOKEN_RE.finditer(text):
        name = match.group(1)
        if name is None:
            raise BadValue(
                f"unmatched {match.group(0)!r} in {text!r}",
                f"braces are only for the placeholders {allowed}",
            )
        if name not in BRANCH_PLACEHOLDERS:
            close = suggest(name, BRANCH_PLACEHOLDERS)
            hint = f"did you mean `{{{close}}}`? " if close else ""
            raise BadValue(
                f"unknown placeholder `{{{name}}}` in {text!r}",
                hint + f"a branch may only use {allowed}",
            )
    if "{run}" not in text:
        raise BadValue(
            f"{text!r} does not contain {{run}}",
            "every run needs its own branch, e.g. outloop/{loop}/{run}",
        )
    branch = text.replace("{loop}", loop).replace("{run}", SAMPLE_RUN_ID)
    problem = branch_name_problem(branch)
    if problem:
        raise BadValue(
            f"{text!r} gives {branch!r}, which is not a valid git branch name: {problem}",
            "see `git help check-ref-format`",
        )
    return text


# --- paths ----------------------------------------------------------------------

# Relative, no backslash, no `..` part, not a directory, not empty.
REPO_PATH_PATTERN = r"(?![/~])(?!.*\\)(?!(?:.*/)?\.\.(?:/|$))(?!.*/$)(?!\.$)[^\x00]+"
GLOB_PATTERN = r"(?![/~])(?!.*\\)(?!(?:.*/)?\.\.(?:/|$))[^\x00]+"


def _relative_problem(text: str) -> BadValue | None:
    if not text:
        return BadValue("expected a path, got an empty string")
    if "\x00" in text:
        return BadValue("a path must not contain NUL characters")
    if text.startswith(("/", "~")):
        return BadValue(
            f"{text!r} is not relative to the repository",
            "write the path from the repository's root, e.g. reports/junit.xml",
        )
    if "\\" in text:
        return BadValue(f"{text!r} contains a backslash", "use '/' between directories")
    if ".." in text.split("/"):
        return BadValue(
            f"{text!r} leaves the repository through '..'",
            "write the path from the repository's root",
        )
    return None


def check_repo_path(text: str) -> str:
    """A file path relative to the repo root; returned normalised (``./a//b`` → ``a/b``)."""
    problem = _relative_problem(text)
    if problem:
        raise problem
    if text.endswith("/"):
        raise BadValue(f"{text!r} names a directory, expected a file")
    normal = posixpath.normpath(text)
    if normal == ".":
        raise BadValue(f"{text!r} names the repository itself, expected a file")
    return normal


def check_glob(text: str) -> str:
    """A repo-relative glob (``**`` allowed); kept as written, since `dir/` means a directory."""
    problem = _relative_problem(text)
    if problem:
        raise problem
    return text


# An absolute path or one under the home directory; no `..` part, not `/` or `~` itself.
SANDBOX_PATH_PATTERN = r"(?=/|~/)(?!.*\\)(?!(?:.*/)?\.\.(?:/|$))(?!/+$)(?!~/+$)[^\x00]+"


def check_sandbox_path(text: str) -> str:
    """A path the sandbox adds to its view: ``/abs/path`` or ``~/path``; returned normalised."""
    if not text:
        raise BadValue("expected a path, got an empty string")
    if "\x00" in text:
        raise BadValue("a path must not contain NUL characters")
    if not text.startswith(("/", "~/")):
        raise BadValue(
            f"{text!r} is neither absolute nor under your home directory",
            "write it as /path/from/root or ~/path/in/home (the worktree is always in view)",
        )
    if ".." in text.split("/"):
        raise BadValue(f"{text!r} has a '..' part", "write the path without '..'")
    prefix, rest = ("~/", text[2:]) if text.startswith("~/") else ("/", text)
    normal = posixpath.normpath("/" + rest).lstrip("/")
    if not normal:
        whole = "your whole home directory" if prefix == "~/" else "the whole file system"
        raise BadValue(
            f"{text!r} is {whole}",
            "name the one directory the agent needs, e.g. ~/.cache/pip or /opt/tool",
        )
    return prefix + normal


# --- network ----------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
HOSTNAME_PATTERN = rf"{_LABEL}(?:\.{_LABEL})*"
HOST_PATTERN = rf"(?:{HOSTNAME_PATTERN}|\[[0-9A-Fa-f:.]+\])(?::{_PORT})?"
LOOPBACK_PATTERN = rf"(?:localhost|127(?:\.{_OCTET}){{3}}|\[::1\])(?::{_PORT})?"
_URL_PATH = r"(?:/[^\s?#]*)?"
# Plain http only to this machine: a key sent in clear over a network is a leaked key.
URL_PATTERN = rf"(?:https://{HOST_PATTERN}|http://{LOOPBACK_PATTERN}){_URL_PATH}"
URL_HINT = "write https://host[:port][/path]; plain http:// is only allowed for localhost"
_HOST_RE = re.compile(HOST_PATTERN)
_URL_RE = re.compile(URL_PATTERN)


def check_host(text: str) -> str:
    """A host name with an optional port, as git's credential protocol names it."""
    if "@" in text:
        raise BadValue(
            f"{without_userinfo(text)!r} contains credentials (user:password@), "
            "which are not shown here",
            "write just the host name; keys belong in `outloop secrets set`",
        )
    if "://" in text:
        bare = text.split("://", 1)[1].split("/", 1)[0]
        raise BadValue(f"{text!r} has a scheme; expected a host name", f"write just `{bare}`")
    if not _HOST_RE.fullmatch(text):
        raise BadValue(
            f"{text!r} is not a host name", "write a host name with an optional port: github.com"
        )
    return text


_USERINFO_RE = re.compile(r"^([^:/?#\s]*:?//)?[^/?#@]*@")


def without_userinfo(text: str) -> str:
    """``https://user:PASSWORD@host/x`` as ``https://***@host/x``: never echo a password."""
    return _USERINFO_RE.sub(lambda m: (m.group(1) or "") + "***@", text, count=1)


def check_url(text: str) -> str:
    """An ``https://`` URL, or ``http://`` to a loopback host; no credentials, query or fragment."""
    scheme, sep, rest = text.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0] if sep else ""
    if "@" in authority or (not sep and "@" in re.split(r"[/?#]", text, maxsplit=1)[0]):
        # the password is not repeated: not here, not in any message built from this one
        raise BadValue(
            f"{without_userinfo(text)!r} contains credentials (user:password@), "
            "which are not shown here",
            "keep keys out of config: `outloop secrets set` stores them, and the policy "
            "says where they may go",
        )
    if _URL_RE.fullmatch(text):
        return text
    if re.search(r"\s", text):
        raise BadValue(f"{text!r} contains whitespace", URL_HINT)
    if not sep:
        raise BadValue(f"{text!r} is not a URL", URL_HINT)
    if scheme not in ("https", "http"):
        raise BadValue(f"{text!r} is not an http(s) URL", URL_HINT)
    if re.search(r"[?#]", rest):
        raise BadValue(f"{text!r} has a query or fragment", URL_HINT)
    if not _HOST_RE.fullmatch(authority):
        raise BadValue(f"{text!r} does not name a valid host and port", URL_HINT)
    if scheme == "http":
        raise BadValue(
            f"{text!r} uses plain http to a host that is not this machine",
            "use https://; plain http:// is only allowed for localhost, 127.x.x.x and [::1]",
        )
    raise BadValue(f"{text!r} is not a valid URL", URL_HINT)


# --- HTTP -----------------------------------------------------------------------

HTTP_TOKEN_PATTERN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALLOW_RULE_PATTERN = rf"(?:\*|{'|'.join(HTTP_METHODS)}) /\S*"
ALLOW_HINT = 'write "METHOD /path", e.g. "POST /v1/*" or "* /v1/models"; * matches any text'
_ALLOW_RE = re.compile(ALLOW_RULE_PATTERN)


def check_allow_rule(text: str) -> str:
    if _ALLOW_RE.fullmatch(text):
        return text
    method, _, path = text.partition(" ")
    if method not in ("*", *HTTP_METHODS):
        close = suggest(method, HTTP_METHODS)
        hint = f"did you mean `{close}`? " + ALLOW_HINT if close else ALLOW_HINT
        raise BadValue(f"{method!r} in {text!r} is not an HTTP method or *", hint)
    if not path.startswith("/"):
        raise BadValue(f"the path in {text!r} must start with '/'", ALLOW_HINT)
    raise BadValue(f"{text!r} is not a METHOD /path rule", ALLOW_HINT)


# --- CI ----------------------------------------------------------------------------

_REPO_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9_.-]+"
CI_REPO_PATTERN = rf"{_REPO_SEGMENT}(?:/{_REPO_SEGMENT})+"
GITHUB_REPO_PATTERN = rf"{_REPO_SEGMENT}/{_REPO_SEGMENT}"
