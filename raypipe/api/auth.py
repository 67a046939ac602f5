"""Bearer tokens and namespaces: which caller sees which experiments, pipelines and runs.

Tokens come from ``RAYPIPE_API_TOKENS="token1:namespace1,token2:namespace2"`` or from the
file named by ``RAYPIPE_API_TOKEN_FILE`` (one ``token:namespace`` per line, ``#``
comments). With none configured the service is open and everything is in the
``default`` namespace (the embedded, single-user set-up).

Example:
    >>> tokens = parse_tokens("s3cret:team-a, other:team-b")
    >>> tokens.namespace_of("s3cret")
    'team-a'
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_NAMESPACE", "Tokens", "parse_tokens", "tokens_from_env"]

DEFAULT_NAMESPACE = "default"
TOKENS_ENV = "RAYPIPE_API_TOKENS"
TOKEN_FILE_ENV = "RAYPIPE_API_TOKEN_FILE"


@dataclass(frozen=True)
class Tokens:
    """The configured tokens; empty means no authentication."""

    by_token: dict[str, str] = field(default_factory=dict)

    @property
    def required(self) -> bool:
        """Whether callers must present a token."""
        return bool(self.by_token)

    def namespace_of(self, token: str) -> str | None:
        """The namespace of ``token``; None for an unknown one (compared in constant time)."""
        found = None
        for known, namespace in self.by_token.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = namespace
        return found


def parse_tokens(text: str, *, source: str = TOKENS_ENV) -> Tokens:
    """``token:namespace`` pairs separated by commas or lines.

    Raises:
        ValueError: a pair without a token or a namespace (naming where it was).
    """
    pairs: dict[str, str] = {}
    for number, raw in enumerate(_entries(text.replace(",", "\n").splitlines()), start=1):
        token, sep, namespace = raw.partition(":")
        token, namespace = token.strip(), namespace.strip()
        if not sep or not token or not namespace:
            raise ValueError(f"{source}: entry {number} is not 'token:namespace'")
        pairs[token] = namespace
    return Tokens(pairs)


def tokens_from_env() -> Tokens:
    """The tokens of ``RAYPIPE_API_TOKENS`` and ``RAYPIPE_API_TOKEN_FILE`` (both may be set)."""
    found: dict[str, str] = {}
    if os.environ.get(TOKENS_ENV):
        found.update(parse_tokens(os.environ[TOKENS_ENV]).by_token)
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        with open(path, encoding="utf-8") as f:
            found.update(parse_tokens(f.read(), source=path).by_token)
    return Tokens(found)


def _entries(lines: Iterable[str]) -> Iterable[str]:
    for line in lines:
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            yield stripped
