"""The template language: paths, conditionals, no re-expansion, escaping; and the params schema."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optio.domain.params import ParamSpec, check_template, coerce, parse_schema, prepare_run, resolve_params
from optio.domain.templates import If, TemplateError, Text, Var, _merge, escape, parse, paths, placeholders, render

# --- paths ---------------------------------------------------------------------------------------------


def test_a_dotted_path_reads_into_the_payload_and_indexes_lists() -> None:
    payload = {"alert": {"name": "disk full", "hosts": ["a", "b"]}}
    assert render("{{payload.alert.name}} on {{ payload.alert.hosts.1 }}", {"payload": payload}) == "disk full on b"


def test_a_missing_path_is_an_error_naming_the_path() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{payload.alert.severity}}", {"payload": {"alert": {}}})
    assert info.value.field == "payload.alert.severity"


@pytest.mark.parametrize(("value", "text"), [(None, ""), (True, "true"), (False, "false"), (3, "3"),
                                              ({"b": 1, "a": [1]}, '{"a": [1], "b": 1}')])
def test_values_that_are_not_text_have_one_rendering(value: object, text: str) -> None:
    assert render("[{{V}}]", {"V": value}) == f"[{text}]"


def test_placeholders_name_the_roots_and_paths_every_read() -> None:
    template = "{{#if payload.x}}{{A}}{{else}}{{payload.y.z}}{{/if}}{{B}}{{A}}"
    assert placeholders(template) == ["payload", "A", "B"]
    assert paths(template) == ["payload.x", "A", "payload.y.z", "B"]


# --- conditionals --------------------------------------------------------------------------------------


def test_if_else_picks_a_branch_and_only_it_needs_its_values() -> None:
    template = "{{#if URGENT}}now: {{WHAT}}{{else}}later{{/if}}"
    assert render(template, {"URGENT": True, "WHAT": "fix"}) == "now: fix"
    assert render(template, {"URGENT": False}) == "later"
    assert render(template, {}) == "later"


@pytest.mark.parametrize("value", [None, False, "", 0, [], {}])
def test_falsy_values_take_the_else_branch(value: object) -> None:
    assert render("{{#if V}}yes{{else}}no{{/if}}", {"V": value}) == "no"


def test_ifs_nest() -> None:
    template = "{{#if A}}a{{#if B}}b{{else}}!b{{/if}}{{else}}!a{{#if B}}b{{/if}}{{/if}}."
    assert render(template, {"A": 1, "B": 1}) == "ab."
    assert render(template, {"A": 1}) == "a!b."
    assert render(template, {"B": "x"}) == "!ab."
    assert render(template, {}) == "!a."


@pytest.mark.parametrize(("template", "message"), [
    ("{{#if A}}open", "never closed"), ("{{/if}}", "without an open"), ("{{else}}", "without an open"),
    ("{{#if A}}x{{else}}y{{else}}z{{/if}}", "without an open"),
])
def test_unbalanced_blocks_are_refused(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse(template)


# --- no re-expansion and escaping ------------------------------------------------------------------------


def test_a_value_is_never_expanded_again() -> None:
    value = "{{B}} {{#if B}}"
    assert render("{{A}} {{#if A}}{{A}}{{/if}}", {"A": value, "B": "no"}) == f"{value} {value}"


def test_a_quoted_literal_writes_braces() -> None:
    assert render('use {{"{{"}}NAME}} for {{NAME}}', {"NAME": "x"}) == "use {{NAME}} for x"
    assert render(r"a \{{NAME}}", {"NAME": "x"}) == r"a \x"


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n != "else")


@given(st.text(max_size=60))
def test_escape_makes_any_text_render_to_itself(text: str) -> None:
    assert render(escape(text), {}) == text


@given(st.dictionaries(_names, st.text(max_size=20), min_size=1, max_size=4), st.text(max_size=10))
def test_any_values_land_verbatim(params: dict[str, str], glue: str) -> None:
    template = escape(glue).join("{{" + name + "}}" for name in params)
    assert render(template, params) == glue.join(params.values())


# A random tree, printed as a template and evaluated directly, must agree with the engine.
_leaf = st.one_of(st.builds(Text, st.text(alphabet="ab {}\\\n", max_size=8)), st.builds(Var, st.sampled_from("XYZ")))
_tree = st.recursive(
    st.lists(_leaf, max_size=3).map(tuple),
    lambda inner: st.lists(st.one_of(_leaf, st.builds(If, st.sampled_from("XYZ"), inner, inner)),
                           max_size=3).map(tuple),
    max_leaves=12,
)


def _print(nodes: tuple) -> str:  # type: ignore[type-arg]
    out = []
    for n in _merge(nodes):
        if isinstance(n, Text):
            out.append(escape(n.text))
        elif isinstance(n, Var):
            out.append("{{" + n.path + "}}")
        else:
            out.append("{{#if " + n.path + "}}" + _print(n.then) + "{{else}}" + _print(n.otherwise) + "{{/if}}")
    return "".join(out)


def _eval(nodes: tuple, ctx: dict[str, str]) -> str:  # type: ignore[type-arg]
    out = []
    for n in nodes:
        if isinstance(n, Text):
            out.append(n.text)
        elif isinstance(n, Var):
            out.append(ctx[n.path])
        else:
            out.append(_eval(n.then if ctx.get(n.path) else n.otherwise, ctx))
    return "".join(out)


@given(_tree, st.fixed_dictionaries({"X": st.sampled_from(["", "x", "{{Y}}"]), "Y": st.sampled_from(["", "y"]),
                                     "Z": st.sampled_from(["", "{{#if X}}"])}))
def test_nested_templates_render_like_their_tree(tree: tuple, ctx: dict[str, str]) -> None:  # type: ignore[type-arg]
    assert render(_print(tree), ctx) == _eval(tree, ctx)


# --- params schema -------------------------------------------------------------------------------------


def test_values_are_coerced_to_their_declared_types() -> None:
    specs = parse_schema({"N": {"type": "integer"}, "B": {"type": "boolean", "default": False},
                          "E": {"type": "enum", "choices": ["low", "high"], "default": "low"}, "S": {}})
    assert resolve_params(specs, {"N": "42", "B": "yes", "S": 7}) == {"N": 42, "B": True, "E": "low", "S": "7"}
    assert resolve_params(specs, {"N": 1, "E": "high", "S": "s"}) == {"N": 1, "B": False, "E": "high", "S": "s"}


@pytest.mark.parametrize(("spec", "value"), [
    (ParamSpec("N", type="integer"), "4.5"), (ParamSpec("N", type="integer"), True),
    (ParamSpec("N", type="boolean"), "maybe"), (ParamSpec("N", type="enum", choices=("a",)), "b"),
    (ParamSpec("N"), ["list"]),
])
def test_a_value_of_the_wrong_type_is_refused_naming_it(spec: ParamSpec, value: object) -> None:
    with pytest.raises(TemplateError) as info:
        coerce(spec, value)
    assert info.value.field == "N"


@pytest.mark.parametrize(("schema", "field"), [
    ({"N": {"type": "float"}}, "N.type"), ({"N": {"type": "enum"}}, "N.choices"),
    ({"N": {"type": "integer", "default": "x"}}, "N.default"), ({"payload": {}}, "payload"),
    ({"N": {"choices": ["a"]}}, "N.choices"),
])
def test_a_bad_schema_is_refused_naming_the_field(schema: dict[str, object], field: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_schema(schema)
    assert info.value.field == field


def test_a_template_reading_an_undeclared_parameter_is_refused() -> None:
    specs = parse_schema({"A": {}})
    check_template("{{A}} {{payload.x}}", specs)
    with pytest.raises(TemplateError) as info:
        check_template("{{A}} {{#if B}}b{{/if}}", specs)
    assert info.value.field == "B"


def test_prepare_run_renders_params_and_payload_together() -> None:
    params, prompt = prepare_run({"N": {"type": "integer", "default": 2}}, "{{N}}x {{payload.who}}", {},
                                 {"who": "ops"})
    assert (params, prompt) == ({"N": 2}, "2x ops")
