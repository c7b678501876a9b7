"""Prices for agents whose report has tokens but no cost (Codex, Gemini CLI).

Prices are USD per million tokens. The built-in table is a starting point that
goes stale; the user's ``$XDG_CONFIG_HOME/outloop/prices.yml`` overrides and
extends it::

    models:
      gpt-5-codex: {input: 1.25, cached_input: 0.125, output: 10.0}
      my-proxy-model: {input: 0.5, output: 1.5}

A model is looked up by its exact name first, then with any ``provider/``
prefix dropped, then by the longest known name it starts with (so
``gpt-5-codex-2026-01-01`` is priced as ``gpt-5-codex``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from outloop_cli.errors import ConfigError, Problem
from outloop_cli.paths import config_home

PRICES_FILE = "prices.yml"


@dataclass(frozen=True)
class Price:
    """One model's prices in USD per million tokens, as in ``prices.yml``."""

    input: float
    output: float
    # cached input tokens; defaults to the full input price when unknown
    cached_input: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (input_tokens - cached) * self.input
            + cached * cached_rate
            + output_tokens * self.output
        ) / 1_000_000


# List prices as published by the providers (USD per 1M tokens).
BUILTIN_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.0, 0.125),
    "gpt-5-codex": Price(1.25, 10.0, 0.125),
    "gpt-5.1": Price(1.25, 10.0, 0.125),
    "gpt-5.1-codex": Price(1.25, 10.0, 0.125),
    "gpt-5.1-codex-mini": Price(0.25, 2.0, 0.025),
    "gpt-5-mini": Price(0.25, 2.0, 0.025),
    "gpt-5-nano": Price(0.05, 0.4, 0.005),
    "gpt-4.1": Price(2.0, 8.0, 0.5),
    "gpt-4.1-mini": Price(0.4, 1.6, 0.1),
    "gpt-4.1-nano": Price(0.1, 0.4, 0.025),
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "gpt-4o-mini": Price(0.15, 0.6, 0.075),
    "o3": Price(2.0, 8.0, 0.5),
    "o4-mini": Price(1.1, 4.4, 0.275),
    "codex-mini-latest": Price(1.5, 6.0, 0.375),
    # Google's list prices for prompts up to 200k tokens
    "gemini-2.5-pro": Price(1.25, 10.0, 0.31),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.025),
}


def prices_path() -> Path:
    return config_home() / PRICES_FILE


def load_prices(path: Path | None = None) -> dict[str, Price]:
    """The built-in table with the user's file laid over it; a bad file is a ConfigError."""
    path = prices_path() if path is None else path
    table = dict(BUILTIN_PRICES)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return table
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            [
                Problem(
                    str(path),
                    f"not valid YAML: {getattr(exc, 'problem', exc)}",
                    line=mark.line + 1 if mark else None,
                    col=mark.column + 1 if mark else None,
                )
            ]
        ) from None
    if data is None:
        return table
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ConfigError(
            [
                Problem(
                    str(path),
                    "expected a `models:` mapping",
                    hint="models: {gpt-5-codex: {input: 1.25, output: 10.0}}  # USD per 1M tokens",
                )
            ]
        )
    problems = []
    for name, entry in models.items():
        price = _parse_price(entry)
        if price is None:
            problems.append(
                Problem(
                    str(path),
                    f"models.{name}: needs numbers `input` and `output` (USD per 1M tokens), "
                    "and optionally `cached_input`",
                    hint=f"{name}: {{input: 1.25, output: 10.0}}",
                )
            )
        else:
            table[str(name)] = price
    if problems:
        raise ConfigError(problems)
    return table


def _parse_price(entry: object) -> Price | None:
    if not isinstance(entry, dict) or set(entry) - {"input", "output", "cached_input"}:
        return None
    values = {}
    for key in ("input", "output", "cached_input"):
        value = entry.get(key)
        if value is None and key == "cached_input":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return None
        values[key] = float(value)
    return Price(values["input"], values["output"], values.get("cached_input"))


def price_for(model: str | None, table: dict[str, Price] | None = None) -> Price | None:
    if not model:
        return None
    table = load_prices() if table is None else table
    for name in (model, model.rsplit("/", 1)[-1]):
        if name in table:
            return table[name]
    bare = model.rsplit("/", 1)[-1]
    prefixes = [name for name in table if bare.startswith(name + "-")]
    return table[max(prefixes, key=len)] if prefixes else None
