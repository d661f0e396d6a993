"""A tiny, safe expression evaluator over numpy, for schedules typed as a formula.

`evaluate("cos(pi / 2 * t) ** 2", t=array)` parses the text with `ast` and walks the tree
itself: only numbers, the named variables, + - * / ** %, unary minus and a whitelist of
numpy functions are allowed. Nothing is passed to `eval`, no attribute or subscript access
exists, and every constant becomes a float64 (so `9 ** 9 ** 9` overflows to inf instead of
building a huge integer).
"""
from __future__ import annotations

import ast

import numpy as np

MAX_LENGTH = 400          # characters of one formula
MAX_NODES = 200           # syntax-tree nodes of one formula


class ExpressionError(ValueError):
    """A formula that is not allowed or cannot be evaluated; the message says why."""


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


FUNCTIONS = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "arctan": np.arctan, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "log10": np.log10,
    "sqrt": np.sqrt, "abs": np.abs, "sigmoid": _sigmoid,
    "minimum": np.minimum, "maximum": np.maximum, "min": np.minimum, "max": np.maximum,
    "clip": np.clip,
}
CONSTANTS = {"pi": np.pi, "e": np.e}
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
           ast.Pow: np.power, ast.Mod: np.mod}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}


def evaluate(text: str, **variables) -> np.ndarray:
    """Value of the formula `text` with the given variables (arrays or floats), float64."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the formula is empty; type an expression in t, e.g. cos(pi / 2 * t) ** 2")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the formula is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"the formula is not a valid expression ({e.msg} at column {e.offset})") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError(f"the formula has more than {MAX_NODES} parts")
    names = {k: np.asarray(v, dtype=np.float64) for k, v in variables.items()}
    with np.errstate(all="ignore"):  # inf / nan are reported by the caller, not raised midway
        return np.asarray(_eval(tree.body, names), dtype=np.float64)


def _eval(node, names):
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"only numbers are allowed as constants, not {node.value!r}")
        return np.float64(node.value)
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in CONSTANTS:
            return np.float64(CONSTANTS[node.id])
        allowed = ", ".join(sorted(names) + sorted(CONSTANTS))
        raise ExpressionError(f"unknown name {node.id!r}; use {allowed} and the functions {', '.join(sorted(FUNCTIONS))}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, names))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(f"function {what!r} is not allowed; use one of {', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise ExpressionError("functions take positional arguments only")
        args = [_eval(a, names) for a in node.args]
        try:
            return FUNCTIONS[node.func.id](*args)
        except TypeError as e:
            raise ExpressionError(f"{node.func.id}: {e}") from None
    raise ExpressionError(f"{type(node).__name__} is not allowed in a formula (only arithmetic and functions)")
