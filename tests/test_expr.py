"""The reference and expression language of node configs.

``{{ expression }}`` parts in config strings are resolved just before a node runs, from the run
input and the outputs of upstream nodes. The language is small and safe: look-ups into JSON data,
literals, operators and a fixed set of functions; nothing else of Python is reachable.
"""

from __future__ import annotations

import pytest

from floworch_server import expr
from floworch_server.expr import ExprError, Expression, evaluate, render

SCOPE = {
    "input": {
        "name": "Ada",
        "amount": 250,
        "price": 2.5,
        "vip": True,
        "note": None,
        "tags": ["math", "engines"],
        "address": {"city": "London", "post-code": "W1"},
        "items": [{"sku": "a1", "qty": 2}, {"sku": "b2", "qty": 5}],
        "i": 1,
        "field": "city",
    },
    "nodes": {
        "fetch": {"output": {"status": 200, "body": {"count": 3}}},
        "fetch-data": {"output": [10, 20]},
    },
    "run": {"id": "run-1", "flow_id": "f-1", "version": "2", "trigger": "manual"},
}


def error_of(src: str, scope: dict | None = None) -> str:
    with pytest.raises(ExprError) as raised:
        evaluate(src, SCOPE if scope is None else scope)
    return str(raised.value)


# ------------------------------------------------------------------ templates
@pytest.mark.parametrize(
    "template, value",
    [
        ("{{ input.amount }}", 250),
        ("{{ input.price }}", 2.5),
        ("{{ input.vip }}", True),
        ("{{ input.note }}", None),
        ("{{ input.tags }}", ["math", "engines"]),
        ("{{ input.address }}", {"city": "London", "post-code": "W1"}),
        ("{{input.amount}}", 250),
        ("  {{ input.amount }}\n", 250),
    ],
)
def test_a_string_that_is_one_whole_reference_keeps_the_type_of_the_value(template, value):
    assert render(template, SCOPE) == value


@pytest.mark.parametrize(
    "template, text",
    [
        ("Hello, {{ input.name }}!", "Hello, Ada!"),
        ("Dear {{ input.name }}, you owe {{ input.amount }}.", "Dear Ada, you owe 250."),
        ("price {{ input.price }}", "price 2.5"),
        ("vip: {{ input.vip }}", "vip: true"),
        ("note: [{{ input.note }}]", "note: []"),
        ("tags: {{ input.tags }}", 'tags: ["math", "engines"]'),
        ("at {{ input.address }}", 'at {"city": "London", "post-code": "W1"}'),
        ("status {{ nodes.fetch.output.status }} for {{ run.id }}", "status 200 for run-1"),
    ],
)
def test_references_inside_text_are_interpolated_as_json_text(template, text):
    assert render(template, SCOPE) == text


def test_text_that_starts_and_ends_with_a_reference_interpolates_each_of_them():
    assert render("{{ input.name }} owes {{ input.amount }}", SCOPE) == "Ada owes 250"
    assert render("{{ input.name }} {{ input.amount }}", SCOPE) == "Ada 250"
    assert render("{{ input.name }}{{ input.amount }}", SCOPE) == "Ada250"


def test_render_walks_objects_and_lists_and_leaves_other_values_alone():
    config = {
        "greeting": "Hello, {{ input.name }}",
        "count": "{{ nodes.fetch.output.body.count }}",
        "list": ["{{ input.tags[0] }}", 7, None, {"deep": "{{ input.i }}"}],
        "plain": "no references here",
        "number": 1.5,
        "flag": False,
    }
    assert render(config, SCOPE) == {
        "greeting": "Hello, Ada",
        "count": 3,
        "list": ["math", 7, None, {"deep": 1}],
        "plain": "no references here",
        "number": 1.5,
        "flag": False,
    }


def test_a_template_that_is_not_closed_is_not_a_reference():
    assert expr.is_template("Hello, {{ input.name }}")
    assert not expr.is_template("Hello")
    assert not expr.is_template(3)
    with pytest.raises(ExprError, match=r"unbalanced '\{\{' and '\}\}' in 'Hello, \{\{ input.name'"):
        list(expr.iter_templates({"greeting": "Hello, {{ input.name"}))


def test_templates_are_found_with_the_path_of_their_field():
    config = {"greeting": "Hi {{ input.name }} and {{ input.amount }}", "list": [1, {"deep": "{{ run.id }}"}], "n": 2}
    assert list(expr.iter_templates(config)) == [
        ("greeting", " input.name "),
        ("greeting", " input.amount "),
        ("list[1].deep", " run.id "),
    ]


# ------------------------------------------------------------------ look-ups
@pytest.mark.parametrize(
    "src, value",
    [
        ("input.name", "Ada"),
        ("input['name']", "Ada"),
        ('input["name"]', "Ada"),
        ("input.address.city", "London"),
        ("input.address['post-code']", "W1"),
        ("input.tags[0]", "math"),
        ("input.tags[-1]", "engines"),
        ("input.items[1].qty", 5),
        ("input.items[input.i].sku", "b2"),
        ("input.address[input.field]", "London"),
        ("nodes.fetch.output.body.count", 3),
        ("nodes['fetch'].output.status", 200),
        ("nodes.fetch-data.output[1]", 20),
        ("run.trigger", "manual"),
        ("input", SCOPE["input"]),
    ],
)
def test_look_ups_read_json_data_by_key_and_index(src, value):
    assert evaluate(src, SCOPE) == value


def test_loop_names_are_available_only_where_a_loop_gives_them():
    assert evaluate("item.sku", {**SCOPE, "item": {"sku": "x"}, "index": 0}) == "x"
    assert error_of("item.sku") == "item is not available here (in 'item.sku')"


# ------------------------------------------------------------------ operators
@pytest.mark.parametrize(
    "src, value",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("7 / 2", 3.5),
        ("6 / 2", 3),
        ("7 % 3", 1),
        ("-input.amount", -250),
        ("input.price * 2", 5.0),
        ("'Ada' + ' ' + 'Lovelace'", "Ada Lovelace"),
        ("input.tags + ['history']", ["math", "engines", "history"]),
        ("input.amount > 100", True),
        ("input.amount <= 100", False),
        ("input.amount == 250", True),
        ("input.amount != 250", False),
        ("'abc' < 'abd'", True),
        ("input.note == null", True),
        ("'math' in input.tags", True),
        ("'chess' not in input.tags", True),
        ("'city' in input.address", True),
        ("'Ad' in input.name", True),
        ("input.vip and input.amount > 100", True),
        ("not input.vip or input.amount > 1000", False),
        ("not (input.amount > 1000)", True),
        ("input.note or 'none'", "none"),
        ("input.name and input.amount", 250),
        ("[1, 'two', null, true]", [1, "two", None, True]),
    ],
)
def test_operators(src, value):
    assert evaluate(src, SCOPE) == value


def test_and_and_or_do_not_evaluate_what_they_do_not_need():
    assert evaluate("false and input.missing", SCOPE) is False
    assert evaluate("true or input.missing", SCOPE) is True


@pytest.mark.parametrize(
    "src, message",
    [
        ("input.name + 1", "'+' needs a number, got string 'Ada' (in 'input.name + 1')"),
        ("input.vip + 1", "'+' needs a number, got boolean True (in 'input.vip + 1')"),
        ("input.amount < 'x'", "cannot compare number 250 < string 'x' (in \"input.amount < 'x'\")"),
        ("input.amount / 0", "division by zero in '/' (in 'input.amount / 0')"),
        (
            "'a' in input.amount",
            "'in' needs a list, object or string on the right, got number (in \"'a' in input.amount\")",
        ),
        ("1 in input.name", "'in' on a string needs a string on the left, got number (in '1 in input.name')"),
        ("-input.name", "'-' needs a number, got string 'Ada' (in '-input.name')"),
        ("'ab' * 3", "'*' needs a number, got string 'ab' (in \"'ab' * 3\")"),
    ],
)
def test_operators_on_the_wrong_kind_of_value_say_what_they_got(src, message):
    assert error_of(src) == message


# ------------------------------------------------------------------ functions
@pytest.mark.parametrize(
    "src, value",
    [
        ("len(input.tags)", 2),
        ("len(input.name)", 3),
        ("len(input.address)", 2),
        ("lower(input.name)", "ada"),
        ("upper(input.name)", "ADA"),
        ("trim('  x  ')", "x"),
        ("str(input.amount)", "250"),
        ("str(input.name)", "Ada"),
        ("str(input.tags)", '["math", "engines"]'),
        ("int('42')", 42),
        ("int(input.price)", 2),
        ("float('1.5')", 1.5),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("abs(-3)", 3),
        ("min(3, 1, 2)", 1),
        ("max([3, 1, 2])", 3),
        ("contains(input.tags, 'math')", True),
        ("contains(input.name, 'z')", False),
        ("startswith(input.name, 'A')", True),
        ("endswith(input.name, 'a')", True),
        ("join(input.tags, ', ')", "math, engines"),
        ("join([1, 2])", "12"),
        ("split('a,b,c', ',')", ["a", "b", "c"]),
        ("split('a b')", ["a", "b"]),
        ("keys(input.address)", ["city", "post-code"]),
        ("values(input.address)", ["London", "W1"]),
        ("json(input.address)", '{"city": "London", "post-code": "W1"}'),
        ("upper(lower(input.name)) + '!'", "ADA!"),
    ],
)
def test_functions(src, value):
    assert evaluate(src, SCOPE) == value


@pytest.mark.parametrize(
    "src, value",
    [
        ("default(input.limit, 10)", 10),
        ("default(input.note, 'none')", "none"),
        ("default(input.amount, 10)", 250),
        ("default(input.vip, false)", True),
        ("default(input.address.zip.code, 'n/a')", "n/a"),
        ("default(input.name.first, 'n/a')", "n/a"),
        ("default(input.tags[5], 'n/a')", "n/a"),
        ("default(nodes.slow.output, [])", []),
    ],
)
def test_default_gives_the_fallback_for_a_value_that_is_missing_or_null(src, value):
    assert evaluate(src, SCOPE) == value


def test_default_keeps_falsy_values_that_are_set():
    scope = {"input": {"zero": 0, "empty": "", "no": False, "none": []}}
    assert [evaluate(f"default(input.{k}, 'x')", scope) for k in ("zero", "empty", "no", "none")] == [0, "", False, []]


def test_default_takes_exactly_a_value_and_a_fallback():
    assert (
        error_of("default(input.limit)")
        == "default() takes 2 arguments: default(value, fallback) (in 'default(input.limit)')"
    )


@pytest.mark.parametrize(
    "src, message",
    [
        ("int('x')", "int(): invalid literal for int() with base 10: 'x' (in \"int('x')\")"),
        ("len(input.amount)", "len(): object of type 'int' has no len() (in 'len(input.amount)')"),
        ("min([])", "min(): min() arg is an empty sequence (in 'min([])')"),
    ],
)
def test_a_function_given_the_wrong_value_fails_with_an_expression_error(src, message):
    assert error_of(src) == message


def test_every_evaluation_failure_is_an_expression_error_never_a_python_exception():
    # A Python exception escaping here would crash the interpreter workflow's task instead of
    # failing the node with a message.
    failing = [
        "lower(input.amount)",
        "upper(input.tags)",
        "trim(input.note)",
        "keys(input.tags)",
        "values(input.name)",
        "startswith(input.amount, 'a')",
        "endswith(input.tags, 'a')",
        "split(input.amount, ',')",
        "int(float('inf'))",
        "round(float('inf'))",
        "input.tags in input.address",
        "input.address[input.tags]",
    ]
    outcome = {}
    for src in failing:
        try:
            evaluate(src, SCOPE)
        except ExprError as exc:
            outcome[src] = str(exc).endswith(f"(in {src!r})")
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding to report
            outcome[src] = f"{type(exc).__name__}: {exc}"
        else:
            outcome[src] = "no error"
    assert outcome == {src: True for src in failing}


# ------------------------------------------------------------------ what is missing is named
@pytest.mark.parametrize(
    "src, message",
    [
        (
            "input.nmae",
            "input.nmae is not set (available: name, amount, price, vip, note, tags, address, items, i, field) (in 'input.nmae')",
        ),
        ("input.address.zip", "input.address.zip is not set (available: city, post-code) (in 'input.address.zip')"),
        (
            "input.address['zip code']",
            'input.address["zip code"] is not set (available: city, post-code) (in "input.address[\'zip code\']")',
        ),
        ("input.tags[2]", "input.tags[2] is out of range (length 2) (in 'input.tags[2]')"),
        ("input.name.first", "input.name.first cannot be looked up in a string (in 'input.name.first')"),
        ("input.note.text", "input.note.text cannot be looked up in a null (in 'input.note.text')"),
        ("input.tags['x']", "input.tags.x cannot be looked up in a list (in \"input.tags['x']\")"),
        ("nodes.slow.output", "nodes.slow is not set (available: fetch, fetch-data) (in 'nodes.slow.output')"),
        (
            "len(input.items[input.i].missing)",
            "input.items[...].missing is not set (available: sku, qty) (in 'len(input.items[input.i].missing)')",
        ),
        ("input.x", "input.x is not set (in 'input.x')"),
    ],
)
def test_a_missing_value_is_an_error_naming_its_path(src, message):
    scope = {"input": {}} if src == "input.x" else SCOPE
    assert error_of(src, scope) == message


def test_a_missing_value_inside_a_template_is_named_too():
    with pytest.raises(ExprError, match=r"^input\.name is not set \(in 'input\.name'\)$"):
        render("Hello, {{ input.name }}!", {"input": {}})


# ------------------------------------------------------------------ nothing but the language
class Secretive:
    secret = "do not leak"

    def __getitem__(self, key):  # pragma: no cover - must never be used
        raise AssertionError("a Python object was indexed")


@pytest.mark.parametrize(
    "src, message",
    [
        (
            "__class__",
            "unknown name '__class__'; names are input, nodes, run, item, index at position 1 in '__class__'",
        ),
        (
            "__import__('os')",
            "unknown function '__import__' (known: abs, contains, default, endswith, float, int, join, json, keys, len, lower, max, min, round, split, startswith, str, trim, upper, values) at position 1 in \"__import__('os')\"",
        ),
        (
            "eval('1 + 1')",
            "unknown function 'eval' (known: abs, contains, default, endswith, float, int, join, json, keys, len, lower, max, min, round, split, startswith, str, trim, upper, values) at position 1 in \"eval('1 + 1')\"",
        ),
        (
            "open('/etc/passwd')",
            "unknown function 'open' (known: abs, contains, default, endswith, float, int, join, json, keys, len, lower, max, min, round, split, startswith, str, trim, upper, values) at position 1 in \"open('/etc/passwd')\"",
        ),
        ("len", "unknown name 'len'; names are input, nodes, run, item, index at position 1 in 'len'"),
        ("os.system", "unknown name 'os'; names are input, nodes, run, item, index at position 1 in 'os.system'"),
        ("input.name()", "unexpected '(' at position 11 in 'input.name()'"),
        ("input.name.upper()", "unexpected '(' at position 17 in 'input.name.upper()'"),
        ("lower(input.name)(1)", "unexpected '(' at position 18 in 'lower(input.name)(1)'"),
        ("input.amount ** 2", "unexpected '*' at position 15 in 'input.amount ** 2'"),
        ("input.x = 1", "unexpected character '=' at position 9 in 'input.x = 1'"),
        ("input.vip if true else false", "unexpected 'if' at position 11 in 'input.vip if true else false'"),
        ("[input for t in input.tags]", "expected ], found 'for' at position 8 in '[input for t in input.tags]'"),
        (
            "[t for t in input.tags]",
            "unknown name 't'; names are input, nodes, run, item, index at position 2 in '[t for t in input.tags]'",
        ),
        ("input; 1", "unexpected character ';' at position 6 in 'input; 1'"),
        ("input.tags @ 2", "unexpected character '@' at position 12 in 'input.tags @ 2'"),
        ("input.name | upper", "unexpected character '|' at position 12 in 'input.name | upper'"),
        ("{'a': 1}", "unexpected character '{' at position 1 in \"{'a': 1}\""),
        ("", "empty expression at position 1 in ''"),
    ],
)
def test_anything_outside_the_language_is_refused_when_parsed(src, message):
    with pytest.raises(ExprError) as refused:
        Expression(src)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "src, message",
    [
        ("input.__class__", "input.__class__ is not set (available: name) (in 'input.__class__')"),
        ("input['__class__']", "input.__class__ is not set (available: name) (in \"input['__class__']\")"),
        ("input.name.__class__", "input.name.__class__ cannot be looked up in a string (in 'input.name.__class__')"),
        ("input.name.upper", "input.name.upper cannot be looked up in a string (in 'input.name.upper')"),
        ("input.keys", "input.keys is not set (available: name) (in 'input.keys')"),
        (
            "input.name.__class__.__mro__",
            "input.name.__class__ cannot be looked up in a string (in 'input.name.__class__.__mro__')",
        ),
        ("len(input).__class__", "(value).__class__ cannot be looked up in a number (in 'len(input).__class__')"),
    ],
)
def test_python_attributes_are_never_reachable_by_look_ups(src, message):
    assert error_of(src, {"input": {"name": "Ada"}}) == message


def test_a_python_object_in_scope_is_not_walked_into():
    with pytest.raises(ExprError, match="cannot be looked up in a Secretive"):
        evaluate("input.secret", {"input": Secretive()})
    with pytest.raises(ExprError, match="cannot be looked up in a Secretive"):
        evaluate("input['secret']", {"input": Secretive()})


def test_references_in_a_template_are_refused_the_same_way():
    with pytest.raises(ExprError, match="cannot be looked up in a string"):
        render("{{ input.name.__class__ }}", {"input": {"name": "Ada"}})
    with pytest.raises(ExprError, match="unknown function 'exec'"):
        render("x {{ exec('print(1)') }} y", {"input": {}})


def test_a_syntax_error_names_the_position_in_the_expression():
    assert error_of("input.amount = 1") == "unexpected character '=' at position 14 in 'input.amount = 1'"
    assert "at position 15 in 'input.amount >'" in error_of("input.amount >")


# ------------------------------------------------------------------ references()
@pytest.mark.parametrize(
    "src, paths",
    [
        ("input.name", [("input", "name")]),
        ("nodes.fetch.output.body.count", [("nodes", "fetch", "output", "body", "count")]),
        ("nodes['fetch'].output", [("nodes", "fetch", "output")]),
        ("nodes.fetch-data.output[0]", [("nodes", "fetch-data", "output", "0")]),
        ("upper(nodes.greet.output.message)", [("nodes", "greet", "output", "message")]),
        ("input.amount > 100 and not run.trigger", [("input", "amount"), ("run", "trigger")]),
        ("default(input.limit, nodes.conf.output.limit)", [("input", "limit"), ("nodes", "conf", "output", "limit")]),
        ("[input.a, -input.b]", [("input", "a"), ("input", "b")]),
        ("len(input.tags) + 1", [("input", "tags")]),
        ("1 + 2", []),
        ("'nodes.fetch.output'", []),
    ],
)
def test_references_lists_the_paths_an_expression_reads(src, paths):
    assert sorted(Expression(src).references()) == sorted(paths)


def test_references_through_a_computed_key_include_the_key_and_the_container():
    refs = Expression("nodes.table.output[nodes.pick.output.key]").references()
    assert sorted(refs) == [("nodes", "pick", "output", "key"), ("nodes", "table", "output")]
    assert sorted(Expression("input.items[input.i].sku").references()) == [("input", "i"), ("input", "items")]
