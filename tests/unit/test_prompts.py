from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optio.domain.prompts import ParamSpec, TemplateError, placeholders, render, resolve_params


def specs(*items: ParamSpec) -> dict[str, ParamSpec]:
    return {s.name: s for s in items}


# --- placeholders ------------------------------------------------------------------------------------


def test_placeholders_are_listed_once_in_order_of_first_use() -> None:
    assert placeholders("{{B}} and {{ A }} then {{B}} and {{c_1}}") == ["B", "A", "c_1"]


@pytest.mark.parametrize("text", ["{{}}", "{{1A}}", "{{A-B}}", "{A}", "{{ A B }}", "plain"])
def test_things_that_are_not_placeholders(text: str) -> None:
    assert placeholders(text) == []
    assert render(text, {}) == text


# --- render ------------------------------------------------------------------------------------------


def test_render_substitutes_every_occurrence_and_tolerates_inner_spaces() -> None:
    assert render("Fix {{REPO}} ({{ REPO }}) by {{ DUE}}", {"REPO": "optio", "DUE": "Friday"}) == (
        "Fix optio (optio) by Friday"
    )


def test_render_reports_the_first_missing_placeholder() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{A}} {{B}} {{C}}", {"A": "x"})
    assert info.value.field == "B"
    assert "{{B}}" in str(info.value)


def test_render_ignores_extra_params() -> None:
    assert render("hi {{NAME}}", {"NAME": "Ada", "UNUSED": "x"}) == "hi Ada"


def test_render_does_not_expand_placeholders_inside_values() -> None:
    assert render("{{A}}", {"A": "{{B}}"}) == "{{B}}"


def test_render_keeps_backslashes_and_group_references_literal() -> None:
    value = r"C:\new\table \1 \g<0>"
    assert render("path={{P}}", {"P": value}) == f"path={value}"


def test_render_is_case_sensitive() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{name}}", {"NAME": "x"})
    assert info.value.field == "name"


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_values = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=30)


@given(st.dictionaries(_names, _values, min_size=1, max_size=5), st.text(alphabet="abc -\n", max_size=20))
def test_render_fills_every_placeholder_with_its_value(params: dict[str, str], glue: str) -> None:
    template = glue.join("{{" + name + "}}" for name in params)
    assert render(template, params) == glue.join(params.values())
    assert placeholders(template) == list(params)


# --- resolve_params ----------------------------------------------------------------------------------


def test_resolve_fills_defaults_and_keeps_given_values() -> None:
    s = specs(ParamSpec("A"), ParamSpec("B", default="b"), ParamSpec("C", default="c"))
    assert resolve_params(s, {"A": "a", "C": "given"}) == {"A": "a", "B": "b", "C": "given"}


def test_resolve_rejects_a_missing_required_param() -> None:
    with pytest.raises(TemplateError) as info:
        resolve_params(specs(ParamSpec("A"), ParamSpec("B")), {"A": "a"})
    assert info.value.field == "B"
    assert "'B'" in str(info.value)


def test_resolve_leaves_out_an_optional_param_without_default() -> None:
    assert resolve_params(specs(ParamSpec("A", required=False)), {}) == {}


def test_resolve_prefers_a_default_even_for_optional_params() -> None:
    assert resolve_params(specs(ParamSpec("A", required=False, default="d")), {}) == {"A": "d"}


def test_resolve_accepts_an_empty_string_as_given() -> None:
    assert resolve_params(specs(ParamSpec("A", default="d")), {"A": ""}) == {"A": ""}


def test_resolve_rejects_unknown_params_naming_the_first_sorted() -> None:
    with pytest.raises(TemplateError) as info:
        resolve_params(specs(ParamSpec("A")), {"A": "a", "Z": "z", "M": "m"})
    assert info.value.field == "M"
    assert "M, Z" in str(info.value)


def test_resolve_without_specs_passes_params_through() -> None:
    assert resolve_params({}, {"ANY": "x"}) == {"ANY": "x"}


def test_resolve_does_not_mutate_its_input() -> None:
    given_params = {"A": "a"}
    resolve_params(specs(ParamSpec("A"), ParamSpec("B", default="b")), given_params)
    assert given_params == {"A": "a"}


def test_resolved_params_render_a_template_end_to_end() -> None:
    s = specs(ParamSpec("REPO"), ParamSpec("BRANCH", default="main"))
    assert render("update {{REPO}} on {{BRANCH}}", resolve_params(s, {"REPO": "optio"})) == ("update optio on main")
