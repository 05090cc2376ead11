"""The building blocks of the OpenAPI document's component schemas (schemas.py,
service_schemas.py)."""

from __future__ import annotations

from enum import Enum

INT_OR_NULL = {"type": ["integer", "null"]}
STR_OR_NULL = {"type": ["string", "null"]}
NUM_OR_NULL = {"type": ["number", "null"]}
WHOLE = {"type": "integer", "minimum": 1}


def obj(required: dict, optional: dict | None = None) -> dict:
    """An object with the `required` properties, and the `optional` ones."""
    props = {**required, **(optional or {})}
    return {"type": "object", "required": sorted(required), "properties": props}


def enum_or_null(members: type[Enum]) -> dict:
    return {"type": ["string", "null"], "enum": [*(member.value for member in members), None]}


def enum_of(members: type[Enum]) -> dict:
    return {"type": "string", "enum": [member.value for member in members]}
