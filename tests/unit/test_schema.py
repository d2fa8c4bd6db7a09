"""orcha.schema: the JSON Schema subset of plugins' settings and kinds' parameters.

validate() (every keyword, defaults filled in, errors naming the key path exactly as a
user reads them), check_schema() (refuses what is outside the subset) and defaults_of().
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from orcha.errors import ConfigError
from orcha.schema import SchemaError, check_schema, defaults_of, validate


def refused(schema: dict[str, Any], value: Any, path: str = "") -> str:
    """The message of the SchemaError validate() raises (checked to carry ``path``)."""
    with pytest.raises(SchemaError) as caught:
        validate(schema, value, path)
    return str(caught.value)


# -- type ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "good", "bad", "words"),
    [
        ("object", {"a": 1}, [1], "expected a mapping, got [1]"),
        ("array", [1, "x"], {"a": 1}, 'expected a list, got {"a": 1}'),
        ("string", "", 5, "expected a string, got 5"),
        ("integer", -3, 2.5, "expected an integer, got 2.5"),
        ("number", 2.5, "2.5", 'expected a number, got "2.5"'),
        ("boolean", False, 0, "expected true or false, got 0"),
        ("null", None, "", 'expected nothing (null), got ""'),
    ],
)
def test_each_type(kind: str, good: Any, bad: Any, words: str) -> None:
    assert validate({"type": kind}, good) == good
    assert refused({"type": kind}, bad) == words


def test_a_list_of_types_accepts_any_of_them() -> None:
    schema = {"type": ["string", "integer"]}
    assert validate(schema, "x") == "x"
    assert validate(schema, 3) == 3
    assert refused(schema, 1.5) == "expected a string or an integer, got 1.5"
    assert refused({"type": ["null", "boolean"]}, 0) == (
        "expected nothing (null) or true or false, got 0"
    )


def test_bool_is_not_an_integer_nor_a_number() -> None:
    assert refused({"type": "integer"}, True) == "expected an integer, got true"
    assert refused({"type": "number"}, False) == "expected a number, got false"


def test_an_integer_counts_as_a_number_but_not_the_reverse() -> None:
    assert validate({"type": "number"}, 7) == 7
    assert refused({"type": "integer"}, 7.0) == "expected an integer, got 7.0"


@pytest.mark.parametrize(
    ("value", "shown"), [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")]
)
def test_nan_and_infinity_are_not_numbers(value: float, shown: str) -> None:
    assert refused({"type": "number"}, value) == f"expected a number, got {shown}"


def test_a_huge_integer_is_a_number_or_a_schema_error_not_a_crash() -> None:
    try:
        validate({"type": "number"}, 10**400)
    except SchemaError:
        pass


def test_no_type_accepts_anything() -> None:
    for value in (None, 1, "x", [1], {"a": 1}, True):
        assert validate({}, value) == value


def test_a_value_of_no_json_type_is_named_by_its_python_type() -> None:
    assert refused({"type": "string"}, b"x") == "expected a string, got b'x'"


# -- objects ---------------------------------------------------------------------------------
OBJECT: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    "required": ["a"],
}


def test_properties_are_checked_and_others_kept_by_default() -> None:
    assert validate(OBJECT, {"a": 1, "b": "x", "c": [1]}) == {"a": 1, "b": "x", "c": [1]}
    assert refused(OBJECT, {"a": "1"}) == 'a: expected an integer, got "1"'
    assert refused(OBJECT, {"a": 1, "b": 2}, "top") == "top.b: expected a string, got 2"


def test_required_property_missing() -> None:
    assert refused(OBJECT, {"b": "x"}) == "a: is required"
    assert refused(OBJECT, {}, "plugins.p.config") == "plugins.p.config.a: is required"


def test_a_required_property_with_a_default_may_be_left_out() -> None:
    schema = {"properties": {"a": {"default": 3}}, "required": ["a"]}
    assert validate(schema, {}) == {"a": 3}


def test_a_required_name_that_is_not_a_property_is_still_required() -> None:
    assert refused({"required": ["x"]}, {}) == "x: is required"
    assert validate({"required": ["x"]}, {"x": None}) == {"x": None}


def test_additional_properties_false_names_the_key_and_the_known_ones() -> None:
    schema = {**OBJECT, "additionalProperties": False}
    assert refused(schema, {"a": 1, "zz": 0}, "cfg") == "cfg.zz: unknown setting (known: a, b)"
    assert refused({"additionalProperties": False}, {"x": 1}) == "x: unknown setting (known: none)"
    # A slip of a known one is named (only a close one: 'zz' is like neither 'a' nor 'b').
    slips = {"additionalProperties": False, "properties": {"timeout": {}, "times": {}}}
    assert refused(slips, {"timout": 1}) == (
        "timout: unknown setting; did you mean 'timeout'? (known: timeout, times)"
    )


def test_additional_properties_as_a_schema() -> None:
    schema = {"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}}
    assert validate(schema, {"a": "x", "n": 1, "m": 2}) == {"a": "x", "n": 1, "m": 2}
    assert refused(schema, {"a": "x", "n": "1"}) == 'n: expected an integer, got "1"'


def test_object_keys_must_be_strings() -> None:
    assert refused({"type": "object"}, {1: "x"}, "p") == "p: keys must be strings, got 1"


def test_properties_apply_only_to_objects() -> None:
    assert validate({"properties": {"a": {"type": "string"}}}, [1]) == [1]


# -- arrays ----------------------------------------------------------------------------------
def test_items_are_checked_with_their_index() -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    assert validate(schema, [1, 2, 3]) == [1, 2, 3]
    assert refused(schema, [1, 2, "x"], "a.b") == 'a.b[2]: expected an integer, got "x"'
    assert refused(schema, [1, 2, "x"]) == '[2]: expected an integer, got "x"'


def test_nested_key_paths_mix_keys_and_indices() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "array", "items": {"type": "object", "properties": {
                "b": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
            }}},
        },
    }  # fmt: skip
    value = {"a": [{"b": []}, {"b": [["x"], ["y", 3]]}]}
    assert refused(schema, value, "root") == "root.a[1].b[1][1]: expected a string, got 3"


def test_min_and_max_items() -> None:
    schema = {"type": "array", "minItems": 1, "maxItems": 2}
    assert validate(schema, [0]) == [0]
    assert validate(schema, [0, 0]) == [0, 0]
    assert refused(schema, [], "argv") == "argv: expected at least 1 item(s), got 0"
    assert refused(schema, [1, 2, 3], "argv") == "argv: expected at most 2 item(s), got 3"


# -- strings ---------------------------------------------------------------------------------
def test_min_and_max_length() -> None:
    schema = {"type": "string", "minLength": 2, "maxLength": 3}
    assert validate(schema, "ab") == "ab"
    assert validate(schema, "abc") == "abc"
    assert refused(schema, "a", "s") == "s: expected at least 2 character(s)"
    assert refused(schema, "abcd", "s") == "s: expected at most 3 character(s)"


def test_pattern_is_searched_not_matched_whole() -> None:
    schema = {"type": "string", "pattern": "[0-9]+"}
    assert validate(schema, "abc123") == "abc123"
    assert refused(schema, "abc", "s") == "s: \"abc\" does not match '[0-9]+'"
    anchored = {"pattern": "^[a-z]+$"}
    assert validate(anchored, "abc") == "abc"
    assert refused(anchored, "abc1") == "\"abc1\" does not match '^[a-z]+$'"


def test_string_keywords_apply_only_to_strings() -> None:
    assert validate({"minLength": 5, "pattern": "x"}, 3) == 3


# -- numbers ---------------------------------------------------------------------------------
def test_minimum_and_maximum_are_inclusive() -> None:
    schema = {"type": "number", "minimum": 0, "maximum": 10}
    assert validate(schema, 0) == 0
    assert validate(schema, 10.0) == 10.0
    assert refused(schema, -0.5, "grace") == "grace: expected a value >= 0, got -0.5"
    assert refused(schema, 11, "grace") == "grace: expected a value <= 10, got 11"


def test_exclusive_minimum_and_maximum() -> None:
    schema = {"exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert validate(schema, 0.5) == 0.5
    assert refused(schema, 0, "x") == "x: expected a value > 0, got 0"
    assert refused(schema, 1, "x") == "x: expected a value < 1, got 1"


def test_number_keywords_do_not_apply_to_booleans() -> None:
    assert validate({"minimum": 5}, False) is False


# -- enum ------------------------------------------------------------------------------------
def test_enum() -> None:
    schema = {"enum": ["a", 1, None]}
    for value in ("a", 1, None):
        assert validate(schema, value) == value
    assert refused(schema, "b", "mode") == 'mode: expected one of "a", 1, null, got "b"'


def test_enum_does_not_confuse_booleans_with_numbers() -> None:
    with pytest.raises(SchemaError):
        validate({"enum": [1]}, True)


def test_type_is_checked_before_enum() -> None:
    assert refused({"type": "string", "enum": ["a"]}, 1) == "expected a string, got 1"


# -- defaults --------------------------------------------------------------------------------
NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "grace": {"type": "number", "default": 5},
        "server": {
            "type": "object",
            "default": {},
            "properties": {
                "port": {"type": "integer", "default": 80},
                "tags": {"type": "array", "default": ["a"]},
            },
        },
        "plain": {"type": "object", "properties": {"x": {"default": 1}}},
    },
}


def test_defaults_are_filled_in_at_every_level() -> None:
    assert validate(NESTED, {}) == {"grace": 5, "server": {"port": 80, "tags": ["a"]}}
    assert validate(NESTED, {"server": {"port": 8080}, "plain": {}}) == {
        "grace": 5,
        "server": {"port": 8080, "tags": ["a"]},
        "plain": {"x": 1},
    }


def test_defaults_fill_objects_inside_arrays() -> None:
    schema = {"type": "array", "items": {"properties": {"n": {"default": 0}}}}
    assert validate(schema, [{}, {"n": 2}]) == [{"n": 0}, {"n": 2}]


def test_the_input_is_not_changed_and_the_result_shares_nothing_with_it() -> None:
    value = {"server": {"port": 1}, "extra": {"deep": [1, 2]}, "plain": {}}
    before = copy.deepcopy(value)
    out = validate(NESTED, value)
    assert value == before
    out["extra"]["deep"].append(3)
    out["server"]["tags"].append("b")
    assert value == before
    assert NESTED["properties"]["server"]["properties"]["tags"]["default"] == ["a"]
    assert validate(NESTED, {})["server"]["tags"] == ["a"]


def test_defaults_are_validated_when_filled_in() -> None:
    bad_default = {"properties": {"n": {"type": "integer", "default": "x"}}}
    assert refused(bad_default, {}, "cfg") == 'cfg.n: expected an integer, got "x"'


# -- SchemaError -----------------------------------------------------------------------------
def test_schema_error_carries_path_and_problem_and_is_a_config_error() -> None:
    with pytest.raises(SchemaError) as caught:
        validate({"type": "number"}, "x", "plugins.shell.config.grace")
    error = caught.value
    assert str(error) == 'plugins.shell.config.grace: expected a number, got "x"'
    assert (error.path, error.problem) == (
        "plugins.shell.config.grace",
        'expected a number, got "x"',
    )
    assert isinstance(error, ConfigError)
    assert error.exit_code == 2


def test_long_values_are_shortened_in_messages() -> None:
    message = refused({"type": "integer"}, "x" * 100)
    assert message == 'expected an integer, got "' + "x" * 56 + "..."


# -- check_schema ----------------------------------------------------------------------------
def test_check_schema_accepts_every_keyword_of_the_subset() -> None:
    check_schema({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "t", "description": "d", "examples": [{}],
        "type": "object",
        "properties": {
            "s": {"type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a",
                  "default": "ab"},
            "n": {"type": ["number", "null"], "minimum": 0, "maximum": 9,
                  "exclusiveMinimum": -1, "exclusiveMaximum": 10, "default": None},
            "l": {"type": "array", "items": {"type": "integer"}, "minItems": 0,
                  "maxItems": 3, "default": [1]},
            "e": {"enum": ["x", "y"], "default": "x"},
            "o": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
        "required": ["s"],
        "additionalProperties": False,
    })  # fmt: skip
    check_schema({"items": True, "additionalProperties": True})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "schema: a schema must be an object, got []"),
        ({"typ": "string"}, "schema: unsupported keyword(s): typ"),
        ({"oneOf": [], "format": "x"}, "schema: unsupported keyword(s): format, oneOf"),
        ({"type": "text"}, "schema.type: expected one of " + ", ".join(
            ("object", "array", "string", "integer", "number", "boolean", "null"))),
        ({"type": []}, "schema.type: expected one of object, array, string, integer, number, "
                       "boolean, null"),
        ({"type": 5}, "schema.type: expected one of object, array, string, integer, number, "
                      "boolean, null"),
        ({"properties": []}, "schema.properties: expected an object"),
        ({"properties": {"a": {"minimum": 0, "bogus": 1}}},
         "schema.properties.a: unsupported keyword(s): bogus"),
        ({"required": "a"}, "schema.required: expected a list of names"),
        ({"required": [1]}, "schema.required: expected a list of names"),
        ({"items": {"type": "nope"}}, "schema.items.type: expected one of object, array, "
                                      "string, integer, number, boolean, null"),
        ({"additionalProperties": {"x": 1}},
         "schema.additionalProperties: unsupported keyword(s): x"),
        ({"enum": "ab"}, "schema.enum: expected a list"),
        ({"type": "integer", "default": True}, "schema.default: expected an integer, got true"),
        ({"enum": [1, 2], "default": 3}, "schema.default: expected one of 1, 2, got 3"),
        ({"properties": {"a": {"properties": {"b": {"type": "string", "default": 5}}}}},
         "schema.properties.a.properties.b.default: expected a string, got 5"),
        ({"properties": {"a": {"required": ["b"], "default": {}}}},
         "schema.properties.a.default.b: is required"),
    ],
)  # fmt: skip
def test_check_schema_refuses(schema: Any, message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        check_schema(schema)
    assert str(caught.value) == message


def test_check_schema_names_the_schema_it_was_given() -> None:
    with pytest.raises(SchemaError) as caught:
        check_schema({"type": "x"}, "the schema of kind k")
    assert str(caught.value).startswith("the schema of kind k.type: ")


@pytest.mark.parametrize("schema", [{"pattern": "["}, {"minimum": "0"}, {"minItems": "2"}])
def test_check_schema_refuses_bad_keyword_values(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        check_schema(schema)


# -- defaults_of -----------------------------------------------------------------------------
def test_defaults_of() -> None:
    assert defaults_of({"type": "integer", "default": 3}) == 3
    assert defaults_of({"type": "string"}) is None
    assert defaults_of({}) is None
    assert defaults_of(NESTED) == {"grace": 5, "server": {"port": 80, "tags": ["a"]}}
    assert defaults_of({"properties": {"a": {"default": 1}}}) == {"a": 1}
    assert defaults_of({"type": "object"}) == {}
    assert defaults_of({"type": "object", "default": {"z": 1}}) == {"z": 1}


def test_defaults_of_an_object_with_a_required_setting_is_none() -> None:
    schema = {"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}
    assert defaults_of(schema) is None


def test_defaults_of_returns_a_copy() -> None:
    schema = {"type": "array", "default": [1]}
    defaults_of(schema).append(2)
    assert schema["default"] == [1]
