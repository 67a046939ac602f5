"""Parse the small subset of CEL that the KFP compiler writes into ``triggerPolicy.condition``.

KFP turns ``dsl.If(a == 'heads')`` into
``inputs.parameter_values['pipelinechannel--flip-coin-Output'] == 'heads'``; ``Elif`` and
``Else`` add ``!(...)`` and ``&&``; integer operands are wrapped in ``int(...)``. This module
reads exactly that: comparisons (``== != < <= > >=``) of parameter references, ``int()``,
``double()`` and ``string()`` casts and literals, combined with ``!``, ``&&`` and parentheses.

Example:
    >>> expr = parse_condition("!(int(inputs.parameter_values['pipelinechannel--n']) > 5)")
    >>> expr
    Not(operand=Compare(op='>', left=Ref(name='pipelinechannel--n', cast='int'), \
right=Literal(value=5)))
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import JsonValue

__all__ = ["And", "CelError", "Compare", "Literal", "Not", "Ref", "parse_condition"]


class CelError(ValueError):
    """The condition is not in the CEL subset KFP emits (the message says what was found)."""


@dataclass(frozen=True)
class Ref:
    """``inputs.parameter_values['name']``, possibly wrapped in a cast such as ``int(...)``."""

    name: str
    cast: str | None = None


@dataclass(frozen=True)
class Literal:
    """A string, number, boolean or null literal."""

    value: JsonValue


Operand = Ref | Literal


@dataclass(frozen=True)
class Compare:
    """``left op right``."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Not:
    """``!(operand)``."""

    operand: Expr


@dataclass(frozen=True)
class And:
    """``a && b && ...``."""

    operands: tuple[Expr, ...]


Expr = Compare | Not | And

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ref>inputs\.parameter_values\[\s*(?P<q>['"])(?P<name>.*?)(?P=q)\s*\])
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z_0-9.]*)
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()])
    )""",
    re.VERBOSE,
)
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_CASTS = ("int", "double", "string")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise CelError(f"cannot read {text[position:].strip()[:30]!r}")
        kind = match.lastgroup if match.lastgroup != "q" else "ref"
        if match.group("ref"):
            tokens.append(("ref", match.group("name")))
        elif kind is not None:
            tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise CelError("the condition ends too early")
        if value is not None and token[1] != value:
            raise CelError(f"expected {value!r}, found {token[1]!r}")
        self.index += 1
        return token

    def expression(self) -> Expr:
        operands = [self.unary()]
        while (token := self.peek()) is not None and token[1] in ("&&", "||"):
            if token[1] == "||":
                raise CelError("'||' (or) is not supported")
            self.take()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Expr:
        token = self.peek()
        if token is not None and token[1] == "!":
            self.take()
            return Not(self.unary())
        if token is not None and token[1] == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        left = self.operand()
        token = self.take()
        if token[1] not in _COMPARISONS:
            raise CelError(f"expected a comparison operator, found {token[1]!r}")
        return Compare(token[1], left, self.operand())

    def operand(self) -> Operand:
        kind, value = self.take()
        if kind == "ref":
            return Ref(value)
        if kind == "string":
            body = value[1:-1].replace('\\"', '"').replace("\\'", "'")
            return Literal(body)
        if kind == "number":
            return Literal(json.loads(value))
        if kind == "word" and value in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[value])
        if kind == "word" and value in _CASTS:
            self.take("(")
            inner = self.operand()
            self.take(")")
            if isinstance(inner, Ref) and inner.cast is None:
                return Ref(inner.name, value)
            if isinstance(inner, Literal):
                return inner
            raise CelError(f"nested casts are not supported ({value}(...))")
        raise CelError(f"unexpected {value!r}")


def parse_condition(text: str) -> Expr:
    """Parse a KFP trigger condition; raises :class:`CelError` outside the supported subset.

    Example:
        >>> parse_condition("inputs.parameter_values['pipelinechannel--x'] == 'a'")
        Compare(op='==', left=Ref(name='pipelinechannel--x', cast=None), right=Literal(value='a'))
    """
    parser = _Parser(text)
    expr = parser.expression()
    leftover = parser.peek()
    if leftover is not None:
        raise CelError(f"unexpected {leftover[1]!r} after the condition")
    return expr
