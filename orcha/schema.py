"""Schemas: what plugins declare for their configuration and their kinds' parameters.

A schema is a dictionary in a subset of JSON Schema (so ``orcha describe`` and
``orcha ls --json`` show something every tool understands):

* ``type``: ``"object"``, ``"array"``, ``"string"``, ``"integer"``, ``"number"``,
  ``"boolean"``, ``"null"``, or a list of them;
* objects: ``properties``, ``required``, ``additionalProperties`` (true, false, or a
  schema for the other values);
* arrays: ``items``, ``minItems``, ``maxItems``;
* strings: ``minLength``, ``maxLength``, ``pattern``;
* numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``;
* any: ``enum``, ``default``, ``description``, ``title``, ``examples``.

:func:`validate` checks a value and returns it with defaults filled in; the error names
the key path (``plugins.greet.config.limit: expected an integer, got "x"``).
:func:`check_schema` refuses a schema using anything else, so a plugin's typo is found
when it loads, not when a user's value is checked.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from orcha.errors import SchemaError

__all__ = ["SchemaError", "check_schema", "defaults_of", "validate"]

_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
          "integer": "an integer", "number": "a number", "boolean": "true or false",
          "null": "nothing (null)"}  # fmt: skip
_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "minItems",
    "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "enum", "default", "description", "title",
    "examples", "$schema",
})  # fmt: skip


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    actual = _type_of(value)
    if kind == "number":
        try:
            return actual in ("integer", "number") and math.isfinite(float(value))
        except OverflowError:  # an integer beyond any float
            return False
    return actual == kind


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1.0 is 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def validate(schema: dict[str, Any], value: Any, path: str = "") -> Any:
    """``value`` checked against ``schema``, with defaults filled in (a new value; the
    given one is not changed). SchemaError naming the first problem otherwise."""
    types = schema.get("type")
    if types is not None:
        wanted = [types] if isinstance(types, str) else list(types)
        if not any(_is(value, t) for t in wanted):
            words = " or ".join(_WORDS.get(t, t) for t in wanted)
            raise SchemaError(path, f"expected {words}, got {_show(value)}")
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        legal = ", ".join(_show(v) for v in schema["enum"])
        raise SchemaError(path, f"expected one of {legal}, got {_show(value)}")
    if isinstance(value, dict):
        return _object(schema, value, path)
    if isinstance(value, list):
        return _array(schema, value, path)
    if isinstance(value, str):
        _string(schema, value, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _number(schema, value, path)
    return value


def _unknown(key: str, properties: dict[str, Any]) -> str:
    """Why ``key`` is refused: unknown, the known one it may be a slip for, and the
    known ones."""
    import difflib

    known = ", ".join(sorted(properties)) or "none"
    close = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.75)
    slip = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting{slip} (known: {known})"


def _object(schema: dict[str, Any], value: dict[str, Any], path: str) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise SchemaError(path, f"keys must be strings, got {_show(key)}")
        where = _join(path, key)
        if key in properties:
            out[key] = validate(properties[key], item, where)
        elif extra is False:
            raise SchemaError(where, _unknown(key, properties))
        elif isinstance(extra, dict):
            out[key] = validate(extra, item, where)
        else:
            out[key] = copy.deepcopy(item)
    for key in schema.get("required", []):
        if key not in out and "default" not in properties.get(key, {}):
            raise SchemaError(_join(path, key), "is required")
    for key, sub in properties.items():
        if key not in out and "default" in sub:
            out[key] = validate(sub, copy.deepcopy(sub["default"]), _join(path, key))
    return out


def _array(schema: dict[str, Any], value: list[Any], path: str) -> list[Any]:
    if "minItems" in schema and len(value) < schema["minItems"]:
        raise SchemaError(path, f"expected at least {schema['minItems']} item(s), got {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise SchemaError(path, f"expected at most {schema['maxItems']} item(s), got {len(value)}")
    items = schema.get("items")
    if not isinstance(items, dict):
        return copy.deepcopy(value)
    return [validate(items, item, _join(path, i)) for i, item in enumerate(value)]


def _string(schema: dict[str, Any], value: str, path: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise SchemaError(path, f"expected at least {schema['minLength']} character(s)")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaError(path, f"expected at most {schema['maxLength']} character(s)")
    if "pattern" in schema:
        import re

        if re.search(schema["pattern"], value) is None:
            raise SchemaError(path, f"{_show(value)} does not match {schema['pattern']!r}")


def _number(schema: dict[str, Any], value: float, path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(path, f"expected a value >= {schema['minimum']}, got {_show(value)}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaError(path, f"expected a value <= {schema['maximum']}, got {_show(value)}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        bound = schema["exclusiveMinimum"]
        raise SchemaError(path, f"expected a value > {bound}, got {_show(value)}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        bound = schema["exclusiveMaximum"]
        raise SchemaError(path, f"expected a value < {bound}, got {_show(value)}")


def defaults_of(schema: dict[str, Any]) -> Any:
    """What an absent value becomes: the schema's default, or for an object the defaults
    of its properties (None if it has none)."""
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if schema.get("type") == "object" or "properties" in schema:
        try:
            return validate(schema, {})
        except SchemaError:
            return None  # it has required settings without defaults
    return None


def check_schema(schema: Any, path: str = "schema") -> None:
    """Refuse (SchemaError) a schema outside the supported subset, or whose defaults do
    not match it."""
    if not isinstance(schema, dict):
        raise SchemaError(path, f"a schema must be an object, got {_show(schema)}")
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise SchemaError(path, f"unsupported keyword(s): {', '.join(sorted(unknown))}")
    types = schema.get("type")
    if types is not None:
        listed = [types] if isinstance(types, str) else types
        if not isinstance(listed, list) or not listed or any(t not in _TYPES for t in listed):
            raise SchemaError(_join(path, "type"), f"expected one of {', '.join(_TYPES)}")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise SchemaError(_join(path, "properties"), "expected an object")
    for key, sub in properties.items():
        check_schema(sub, _join(_join(path, "properties"), key))
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(_join(path, "required"), "expected a list of names")
    for key in ("items",):
        if key in schema and not isinstance(schema[key], bool):
            check_schema(schema[key], _join(path, key))
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        check_schema(extra, _join(path, "additionalProperties"))
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SchemaError(_join(path, "enum"), "expected a list")
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in schema and not _is(schema[key], "number"):
            raise SchemaError(_join(path, key), f"expected a number, got {_show(schema[key])}")
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        if key in schema and (not _is(schema[key], "integer") or schema[key] < 0):
            raise SchemaError(
                _join(path, key), f"expected an integer >= 0, got {_show(schema[key])}"
            )
    for key in ("description", "title"):
        if key in schema and not isinstance(schema[key], str):
            raise SchemaError(_join(path, key), "expected a string")
    if "pattern" in schema:
        import re

        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as e:
            raise SchemaError(_join(path, "pattern"), f"not a regular expression: {e}") from None
    if "default" in schema:
        validate(schema, schema["default"], _join(path, "default"))
