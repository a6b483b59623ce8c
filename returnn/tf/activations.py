"""Activation functions by RETURNN's names, and RETURNN's arithmetic of them: ``"2*sigmoid"`` is
``2 * sigmoid(x)``, ``"relu+tanh"`` is ``relu(x) + tanh(x)``, ``"1-sigmoid"``, ``"3+2*sigmoid"``
(``+ - * /`` between function names and numbers, the usual precedence)."""

from __future__ import annotations

import operator
import re
from typing import Any, Callable

import tensorflow as tf

from returnn.errors import LayerConfigError

ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "identity": tf.identity, "linear": tf.identity, "none": tf.identity,
    "relu": tf.nn.relu, "relu6": tf.nn.relu6, "leaky_relu": tf.nn.leaky_relu, "elu": tf.nn.elu, "selu": tf.nn.selu,
    "gelu": tf.nn.gelu, "swish": tf.nn.silu, "silu": tf.nn.silu,
    "tanh": tf.tanh, "sigmoid": tf.sigmoid, "log_sigmoid": tf.math.log_sigmoid, "softsign": tf.nn.softsign,
    "softplus": tf.nn.softplus, "softmax": tf.nn.softmax, "log_softmax": tf.nn.log_softmax,
    "exp": tf.exp, "log": tf.math.log, "abs": tf.abs, "square": tf.square, "sqrt": tf.sqrt,
    "sin": tf.sin, "cos": tf.cos,
}

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|([-+*/]))")
_BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}

Term = Callable[[Any], Any]


def get_activation(name: str | None) -> Callable[[Any], Any]:
    """The function for ``name`` (None: identity); unknown names and malformed expressions raise
    ``LayerConfigError`` (unknown names list the known ones)."""
    if name is None:
        return tf.identity
    text = str(name).strip()
    if text in ACTIVATIONS:
        return ACTIVATIONS[text]
    if "(" in text:
        raise LayerConfigError(f'"activation": {text!r}: expressions with parentheses are not supported; use an '
                               '"eval" layer')
    return _Parser(text).parse()


class _Parser:
    """``expr := term (("+" | "-") term)*``, ``term := factor (("*" | "/") factor)*``,
    ``factor := "-" factor | number | name``; builds ``x -> value`` functions."""

    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise self.error(f"unexpected {text[pos:].strip()[:10]!r}")
            number, ident, op = match.groups()
            self.tokens.append(("num", number) if number else ("name", ident) if ident else ("op", op))
            pos = match.end()
        self.pos = 0

    def error(self, message: str) -> LayerConfigError:
        return LayerConfigError(f'"activation": {self.text!r}: {message}; expected function names and numbers '
                                'joined by + - * / (e.g. "2*sigmoid")')

    def parse(self) -> Term:
        if not self.tokens:
            raise self.error("empty")
        func = self._sum()
        if self.pos < len(self.tokens):
            raise self.error(f"unexpected {self.tokens[self.pos][1]!r}")
        return func

    def _peek_op(self, ops: str) -> str | None:
        if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "op" and self.tokens[self.pos][1] in ops:
            self.pos += 1
            return self.tokens[self.pos - 1][1]
        return None

    def _sum(self) -> Term:
        return self._chain(self._product, "+-")

    def _product(self) -> Term:
        return self._chain(self._factor, "*/")

    def _chain(self, operand: Callable[[], Term], ops: str) -> Term:
        func = operand()
        while (op := self._peek_op(ops)) is not None:
            func = _combine(_BINARY[op], func, operand())
        return func

    def _factor(self) -> Term:
        if self._peek_op("-") is not None:
            return _combine(operator.mul, _constant(-1.0), self._factor())
        if self.pos >= len(self.tokens):
            raise self.error("ends after an operator")
        kind, value = self.tokens[self.pos]
        self.pos += 1
        if kind == "num":
            return _constant(float(value))
        if kind == "name":
            if value not in ACTIVATIONS:
                raise LayerConfigError(f'"activation": unknown {value!r}; known: {", ".join(sorted(ACTIVATIONS))}')
            return ACTIVATIONS[value]
        raise self.error(f"unexpected {value!r}")


def _combine(op: Callable[[Any, Any], Any], a: Term, b: Term) -> Term:
    def combined(x: Any) -> Any:
        return op(a(x), b(x))

    return combined


def _constant(value: float) -> Term:
    def constant(x: Any) -> float:
        return value

    return constant
