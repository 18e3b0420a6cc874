"""``math_cond``: the constraint strings of TAO's dialect, parsed into clauses.

A ``math_cond`` is one or more clauses ``OP OPERAND`` (spaces optional):

* ``> 0.0``, ``>=1``, ``< 5``, ``<= 1.0``, ``!= 0``, ``== 3`` -- constant comparisons; several may be
  chained (``> 0.0 <= 1.0``). TAO ignores them; we enforce them exactly.
* ``^ k`` -- the value is a power of ``k`` (``k**0 == 1`` included when it lies in range).
* ``/ k`` -- the value is a multiple of ``k``.
* ``> depends_on`` (and ``>=``, ``<``, ``<=``, ``!=``) -- compared with the parent's value.
* ``/ depends_on`` -- our extension: a multiple of the parent's value (e.g. a batch size divisible by
  the instances per class).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

COMPARE = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "!=": operator.ne, "==": operator.eq,
}
_CLAUSE = re.compile(r"\s*(>=|<=|!=|==|>|<|\^|/)\s*([A-Za-z_][A-Za-z_0-9.]*|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
PARENT = "depends_on"


@dataclass(frozen=True)
class Clause:
    op: str               # one of COMPARE, "^" or "/"
    operand: float | str  # a number, or PARENT

    @property
    def relational(self) -> bool:
        return self.operand == PARENT

    def text(self) -> str:
        operand = self.operand if isinstance(self.operand, str) else _num(self.operand)
        return f"{self.op} {operand}"

    def holds(self, value: float, parent: float | None = None) -> bool:
        other = parent if self.relational else self.operand
        if other is None:
            return True
        if self.op in COMPARE:
            return COMPARE[self.op](value, other)
        if self.op == "/":
            return other != 0 and _is_multiple(value, other)
        if self.op == "^":
            return is_power(value, other)
        return True


@dataclass(frozen=True)
class Condition:
    text: str
    clauses: tuple[Clause, ...]

    @property
    def needs_parent(self) -> bool:
        return any(c.relational for c in self.clauses)

    def constants(self) -> list[Clause]:
        return [c for c in self.clauses if not c.relational and c.op in COMPARE]

    def power(self) -> float | None:
        return next((c.operand for c in self.clauses if c.op == "^" and not c.relational), None)

    def multiple(self) -> float | None:
        return next((c.operand for c in self.clauses if c.op == "/" and not c.relational), None)

    def relations(self) -> list[Clause]:
        return [c for c in self.clauses if c.relational]


def parse_math_cond(text: str) -> Condition:
    pos, clauses = 0, []
    stripped = text.strip()
    while pos < len(stripped):
        m = _CLAUSE.match(stripped, pos)
        if not m or m.end() == pos:
            raise ValueError(f"math_cond '{text}' is not understood (expected clauses like '> 0.0', '^ 2', "
                             f"'/ 8', '> depends_on')")
        op, operand = m.group(1), m.group(2)
        if operand == PARENT:
            if op == "^":
                raise ValueError(f"math_cond '{text}': '^ depends_on' is not supported")
            clauses.append(Clause(op, PARENT))
        elif re.match(r"[A-Za-z_]", operand):
            raise ValueError(f"math_cond '{text}': operand '{operand}' must be a number or 'depends_on'")
        else:
            value = float(operand)
            if op == "^" and value <= 1:
                raise ValueError(f"math_cond '{text}': the base of '^' must be > 1")
            if op == "/" and value <= 0:
                raise ValueError(f"math_cond '{text}': '/' needs a positive divisor")
            clauses.append(Clause(op, int(value) if value.is_integer() else value))
        pos = m.end()
    if not clauses:
        raise ValueError("math_cond is empty")
    return Condition(text, tuple(clauses))


def is_power(value: float, base: float) -> bool:
    if value <= 0:
        return False
    x = 1.0
    for _ in range(200):
        if abs(x - value) <= 1e-9 * max(1.0, abs(value)):
            return True
        if x > value:
            return False
        x *= base
    return False


def _is_multiple(value: float, k: float) -> bool:
    q = value / k
    return abs(q - round(q)) <= 1e-9 * max(1.0, abs(q))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
