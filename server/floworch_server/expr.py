"""The reference and expression language of node configs.

Node config strings may hold ``{{ expression }}`` parts, resolved inside the workflow just
before the node runs, from the run input and the outputs of upstream nodes::

    "{{ input.name }}"                      the whole value, keeping its type
    "Hello, {{ input.name }}!"              text with the value interpolated
    "{{ nodes.fetch.output.body.items[0] }}"
    "{{ default(input.limit, 10) }}"

Expressions (also used on their own, e.g. by ``control.if``) are small and safe: there is no
Python eval and no attribute access on Python objects, only look-ups into JSON data.

- names: ``input`` (the run input), ``nodes.<id>.output`` (an upstream node's output),
  ``run`` (``id``, ``flow_id``, ``version``, ``trigger``), ``item``/``index`` where a loop gives them;
- literals: numbers, ``'text'`` or ``"text"``, ``true``, ``false``, ``null``, ``[a, b]``;
- look-ups: ``a.b``, ``a['key']``, ``a[0]``, ``a[-1]``;
- operators: ``+ - * / %``, ``== != < <= > >=``, ``in``, ``not in``, ``and``, ``or``, ``not``;
- functions: ``len lower upper trim str int float round abs min max default contains
  startswith endswith join split keys values json``.

A look-up of something that is not there is an error naming the path (``input.name is not set``);
``default(x, fallback)`` gives ``fallback`` instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

ROOT_NAMES = ("input", "nodes", "run", "item", "index")
TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}", re.S)


class ExprError(ValueError):
    """A syntax or evaluation error; ``str()`` names the expression and the place."""

    path: str | None = None  # the config field it is in, when known


# --------------------------------------------------------------------------- tokens
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*|\.\d+|\d+)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>==|!=|<=|>=|[-+*/%<>()\[\].,])
    """,
    re.X,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    value: Any
    pos: int


def _tokenize(src: str) -> list[_Tok]:
    toks, pos = [], 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if not m:
            raise ExprError(f"unexpected character {src[pos]!r} at position {pos + 1} in {src.strip()!r}")
        kind = m.lastgroup
        text = m.group()
        if kind == "num":
            toks.append(_Tok("num", float(text) if "." in text else int(text), pos))
        elif kind == "str":
            toks.append(_Tok("str", _unescape(text[1:-1]), pos))
        elif kind == "name":
            # '-' is allowed inside node ids; a name never ends with it
            toks.append(_Tok("kw" if text in _KEYWORDS else "name", text, pos))
        elif kind == "op":
            toks.append(_Tok("op", text, pos))
        pos = m.end()
    toks.append(_Tok("end", None, len(src)))
    return toks


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


# --------------------------------------------------------------------------- AST
# Nodes are tuples: ("lit", v) ("name", n) ("get", obj, key_node) ("un", op, a)
# ("bin", op, a, b) ("call", fname, [args]) ("list", [items])


class _Parser:
    def __init__(self, src: str):
        self.src = src.strip()
        self.toks = _tokenize(self.src)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, msg: str, tok: _Tok | None = None) -> ExprError:
        tok = tok or self.peek()
        return ExprError(f"{msg} at position {tok.pos + 1} in {self.src.strip()!r}")

    def expect(self, kind: str, value: Any = None) -> _Tok:
        tok = self.take()
        if tok.kind != kind or (value is not None and tok.value != value):
            raise self.error(f"expected {value or kind}, found {_shown(tok)}", tok)
        return tok

    def at(self, kind: str, value: Any = None) -> bool:
        tok = self.peek()
        return tok.kind == kind and (value is None or tok.value == value)

    def parse(self):
        if self.at("end"):
            raise self.error("empty expression")
        node = self.or_()
        if not self.at("end"):
            raise self.error(f"unexpected {_shown(self.peek())}")
        return node

    def or_(self):
        node = self.and_()
        while self.at("kw", "or"):
            self.take()
            node = ("bin", "or", node, self.and_())
        return node

    def and_(self):
        node = self.not_()
        while self.at("kw", "and"):
            self.take()
            node = ("bin", "and", node, self.not_())
        return node

    def not_(self):
        if self.at("kw", "not"):
            self.take()
            return ("un", "not", self.not_())
        return self.cmp()

    def cmp(self):
        node = self.sum()
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return ("bin", tok.value, node, self.sum())
        if self.at("kw", "in"):
            self.take()
            return ("bin", "in", node, self.sum())
        if self.at("kw", "not") and self.toks[self.i + 1].kind == "kw" and self.toks[self.i + 1].value == "in":
            self.take(), self.take()
            return ("bin", "not in", node, self.sum())
        return node

    def sum(self):
        node = self.prod()
        while self.peek().kind == "op" and self.peek().value in ("+", "-"):
            op = self.take().value
            node = ("bin", op, node, self.prod())
        return node

    def prod(self):
        node = self.unary()
        while self.peek().kind == "op" and self.peek().value in ("*", "/", "%"):
            op = self.take().value
            node = ("bin", op, node, self.unary())
        return node

    def unary(self):
        if self.at("op", "-"):
            self.take()
            return ("un", "-", self.unary())
        return self.postfix()

    def postfix(self):
        node = self.primary()
        while True:
            if self.at("op", "."):
                self.take()
                tok = self.take()
                if tok.kind not in ("name", "kw", "num"):
                    raise self.error("expected a name after '.'", tok)
                node = ("get", node, ("lit", tok.value))
            elif self.at("op", "["):
                self.take()
                key = self.or_()
                self.expect("op", "]")
                node = ("get", node, key)
            else:
                return node

    def primary(self):
        tok = self.take()
        if tok.kind in ("num", "str"):
            return ("lit", tok.value)
        if tok.kind == "kw" and tok.value in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[tok.value])
        if tok.kind == "name":
            if self.at("op", "("):
                self.take()
                if tok.value not in FUNCTIONS:
                    raise self.error(f"unknown function {tok.value!r} (known: {', '.join(sorted(FUNCTIONS))})", tok)
                args = []
                if not self.at("op", ")"):
                    args.append(self.or_())
                    while self.at("op", ","):
                        self.take()
                        args.append(self.or_())
                self.expect("op", ")")
                return ("call", tok.value, args)
            if tok.value not in ROOT_NAMES:
                raise self.error(f"unknown name {tok.value!r}; names are {', '.join(ROOT_NAMES)}", tok)
            return ("name", tok.value)
        if tok.kind == "op" and tok.value == "(":
            node = self.or_()
            self.expect("op", ")")
            return node
        if tok.kind == "op" and tok.value == "[":
            items = []
            if not self.at("op", "]"):
                items.append(self.or_())
                while self.at("op", ","):
                    self.take()
                    items.append(self.or_())
            self.expect("op", "]")
            return ("list", items)
        raise self.error(f"unexpected {_shown(tok)}", tok)


def _shown(tok: _Tok) -> str:
    return "end of expression" if tok.kind == "end" else repr(tok.value)


def parse(src: str):
    return _Parser(src).parse()


# --------------------------------------------------------------------------- evaluation
class _Missing(Exception):
    def __init__(self, path: str, detail: str = ""):
        super().__init__(path)
        self.path = path
        self.detail = detail


def _path_of(node) -> str:
    kind = node[0]
    if kind == "name":
        return node[1]
    if kind == "get":
        base = _path_of(node[1])
        key = node[2]
        if key[0] == "lit" and isinstance(key[1], str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key[1]):
            return f"{base}.{key[1]}"
        if key[0] == "lit":
            return f"{base}[{json.dumps(key[1])}]"
        return f"{base}[...]"
    return "(value)"


def _eval(node, scope: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "name":
        if node[1] not in scope:
            raise _Missing(node[1], "is not available here")
        return scope[node[1]]
    if kind == "list":
        return [_eval(n, scope) for n in node[1]]
    if kind == "get":
        obj = _eval(node[1], scope)
        key = _eval(node[2], scope)
        if isinstance(obj, dict):
            if key in obj:
                return obj[key]
            keys = ", ".join(map(str, list(obj)[:10]))
            raise _Missing(_path_of(node), f"is not set (available: {keys})" if keys else "is not set")
        if isinstance(obj, list) and isinstance(key, int) and not isinstance(key, bool):
            if -len(obj) <= key < len(obj):
                return obj[key]
            raise _Missing(_path_of(node), f"is out of range (length {len(obj)})")
        raise _Missing(_path_of(node), f"cannot be looked up in a {_type_name(obj)}")
    if kind == "un":
        val = _eval(node[2], scope)
        if node[1] == "not":
            return not _truthy(val)
        _need_number(val, "-")
        return -val
    if kind == "bin":
        op = node[1]
        if op == "and":
            left = _eval(node[2], scope)
            return _eval(node[3], scope) if _truthy(left) else left
        if op == "or":
            left = _eval(node[2], scope)
            return left if _truthy(left) else _eval(node[3], scope)
        return _binary(op, _eval(node[2], scope), _eval(node[3], scope))
    if kind == "call":
        name, args = node[1], node[2]
        if name == "default":
            if len(args) != 2:
                raise ExprError("default() takes 2 arguments: default(value, fallback)")
            try:
                value = _eval(args[0], scope)
            except _Missing:
                return _eval(args[1], scope)
            return _eval(args[1], scope) if value is None else value
        values = [_eval(a, scope) for a in args]
        try:
            return FUNCTIONS[name](*values)
        except AttributeError:
            raise ExprError(f"{name}() cannot be applied to a {_type_name(values[0])}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ExprError(f"{name}(): {exc}") from None
    raise ExprError(f"cannot evaluate {kind}")  # pragma: no cover - parser builds only the kinds above


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(v), type(v).__name__
    )


def _truthy(v: Any) -> bool:
    return bool(v)


def _need_number(v: Any, op: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExprError(f"'{op}' needs a number, got {_type_name(v)} {v!r}")


def _binary(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op in ("in", "not in"):
        if not isinstance(b, (list, dict, str)):
            raise ExprError(f"'{op}' needs a list, object or string on the right, got {_type_name(b)}")
        if isinstance(b, str) and not isinstance(a, str):
            raise ExprError(f"'{op}' on a string needs a string on the left, got {_type_name(a)}")
        found = a in b
        return found if op == "in" else not found
    if op in ("<", "<=", ">", ">="):
        comparable = (isinstance(a, str) and isinstance(b, str)) or (
            not isinstance(a, (bool, str))
            and not isinstance(b, (bool, str))
            and isinstance(a, (int, float))
            and isinstance(b, (int, float))
        )
        if not comparable:
            raise ExprError(f"cannot compare {_type_name(a)} {a!r} {op} {_type_name(b)} {b!r}")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op == "+":
        if isinstance(a, str) and isinstance(b, str):
            return a + b
        if isinstance(a, list) and isinstance(b, list):
            return a + b
    _need_number(a, op)
    _need_number(b, op)
    if op in ("/", "%") and b == 0:
        raise ExprError(f"division by zero in '{op}'")
    result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b, "%": lambda: a % b}[op]()
    if isinstance(result, float) and math.isfinite(result) and result.is_integer() and op == "/":
        return int(result)
    return result


def _round(x, n=0):
    return round(x, n) if n else round(x)


def _join(items, sep=""):
    return sep.join(str(i) for i in items)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "trim": lambda s: s.strip(),
    "str": lambda v: v if isinstance(v, str) else json.dumps(v),
    "int": int,
    "float": float,
    "round": _round,
    "abs": abs,
    "min": lambda *a: min(a[0]) if len(a) == 1 else min(a),
    "max": lambda *a: max(a[0]) if len(a) == 1 else max(a),
    "default": None,  # type: ignore[dict-item]  # a name only: _eval handles default() lazily
    "contains": lambda a, b: b in a,
    "startswith": lambda s, p: s.startswith(p),
    "endswith": lambda s, p: s.endswith(p),
    "join": _join,
    "split": lambda s, sep=None: s.split(sep),
    "keys": lambda d: list(d.keys()),
    "values": lambda d: list(d.values()),
    "json": lambda v: json.dumps(v, sort_keys=True),
}


# --------------------------------------------------------------------------- public API
class Expression:
    """A parsed expression; parse once, evaluate many times."""

    def __init__(self, src: str):
        self.src = src.strip()
        self.tree = parse(src)

    def evaluate(self, scope: dict[str, Any]) -> Any:
        try:
            return _eval(self.tree, scope)
        except _Missing as exc:
            raise ExprError(f"{exc.path} {exc.detail} (in {self.src!r})") from None
        except ExprError as exc:
            raise ExprError(f"{exc} (in {self.src!r})") from None
        except (TypeError, ArithmeticError) as exc:  # e.g. a list used as an object key
            raise ExprError(f"{exc} (in {self.src!r})") from None

    def references(self) -> list[tuple[str, ...]]:
        """The name paths this expression reads, as far as they are literal: ('nodes', 'fetch', 'output')."""
        found: list[tuple[str, ...]] = []

        def walk(node) -> tuple[str, ...] | None:
            kind = node[0]
            if kind == "name":
                return (node[1],)
            if kind == "get":
                base = walk(node[1])
                if node[2][0] != "lit":
                    key_path = walk(node[2])
                    if key_path:
                        found.append(key_path)
                    if base:
                        found.append(base)
                    return None
                if base is None:
                    return None
                return (*base, str(node[2][1]))
            for child in node[1:]:
                if isinstance(child, tuple):
                    path = walk(child)
                    if path:
                        found.append(path)
                elif isinstance(child, list):
                    for c in child:
                        path = walk(c)
                        if path:
                            found.append(path)
            return None

        top = walk(self.tree)
        if top:
            found.append(top)
        return found


def evaluate(src: str, scope: dict[str, Any]) -> Any:
    return Expression(src).evaluate(scope)


def template_parts(text: str) -> list[str]:
    """The expressions inside ``{{ }}`` of a string."""
    return [m.group(1) for m in TEMPLATE_RE.finditer(text)]


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def render(value: Any, scope: dict[str, Any]) -> Any:
    """Resolve every ``{{ }}`` in a JSON value. A string that is one whole expression keeps its type."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        m = TEMPLATE_RE.fullmatch(value.strip())
        if m and "}}" not in m.group(1):
            return Expression(m.group(1)).evaluate(scope)
        return TEMPLATE_RE.sub(lambda m: _as_text(Expression(m.group(1)).evaluate(scope)), value)
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, sort_keys=True)


def iter_templates(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, expression source) for every ``{{ }}`` inside a JSON value."""
    if isinstance(value, str):
        if "{{" in value:
            if value.count("{{") != value.count("}}"):
                error = ExprError(f"unbalanced '{{{{' and '}}}}' in {value!r}")
                error.path = path
                raise error
            for part in template_parts(value):
                yield path, part
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_templates(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_templates(v, f"{path}[{i}]")
