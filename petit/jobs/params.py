"""The job key `params:` -> validated core.params.ParamSpec, one problem line per bad field."""

from __future__ import annotations

from ..core.params import MAX_NAME_CHARS, MAX_PARAMS, NAME_PATTERN, ParamSpec, ParamType, convert
from ..core.text import short_repr
from .fields import Problems, check_unknown_keys, read_choice, read_string

PARAM_KEYS = {"type", "default", "choices", "required", "description", "secret"}


def read_params(problems: Problems, value, scheduled: bool) -> tuple[ParamSpec, ...]:
    """`params: {name: {type, default, choices, required, description, secret}}`. A scheduled
    job may not require a param: its scheduled runs, which use the defaults, could never start."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        problems.add(
            f"params: expected a map of name: {{type: ..., default: ...}}, got "
            f"{type(value).__name__}"
        )
        return ()
    if len(value) > MAX_PARAMS:
        problems.add(f"params: {len(value)} params is more than the limit of {MAX_PARAMS}")
        return ()
    specs = []
    for name, item in value.items():
        if (
            not isinstance(name, str)
            or not NAME_PATTERN.fullmatch(name)
            or len(name) > MAX_NAME_CHARS
        ):
            problems.add(
                f"params: {short_repr(name)} is not a valid param name: expected 1 to "
                f"{MAX_NAME_CHARS} letters, digits and _, not starting with a digit"
            )
            continue
        with problems.within(f"params: {name}"):
            spec = _param(problems, name, item, scheduled)
        if spec is not None:
            specs.append(spec)
    return tuple(specs)


def _param(problems: Problems, name: str, data, scheduled: bool) -> ParamSpec | None:
    if not isinstance(data, dict):
        problems.add(f"expected a map with {', '.join(sorted(PARAM_KEYS))}")
        return None
    check_unknown_keys(problems, data, PARAM_KEYS, "a param")
    kind = (  # None when misspelt: the checks that depend on it are skipped, not repeated
        ParamType.STRING
        if data.get("type") is None
        else read_choice(problems, ParamType, data["type"], "type", None)
    )
    required, secret = (_flag(problems, data, key) for key in ("required", "secret"))
    description = read_string(problems, data, "description") or ""
    choices = _choices(problems, data, kind)
    if kind is None:
        return None
    spec = ParamSpec(name, kind, None, choices, required, description)
    default = data.get("default")
    if default is not None:
        if required:
            problems.add("required: a required param cannot have a default (give one or the other)")
        try:
            default = convert(spec, default, as_text=False)
        except ValueError as exc:
            problems.add(f"default: {exc}")
            default = None
    elif required and scheduled:
        problems.add(
            "required: the job has a schedule, and its scheduled runs (which use the defaults) "
            "could never start: give a default instead"
        )
    return ParamSpec(name, kind, default, choices, required, description, secret)


def _flag(problems: Problems, data: dict, key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        problems.add(f"{key}: expected true or false, got {short_repr(value)}")
        return False
    return value


def _choices(problems: Problems, data: dict, kind: ParamType | None) -> tuple[str, ...]:
    raw = data.get("choices")
    if kind is not ParamType.CHOICE:
        if raw is not None and kind is not None:
            problems.add(f"choices: only for type choice, not {kind.value}")
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        problems.add(
            f"choices: type choice needs a non-empty list of strings, got {short_repr(raw)}"
        )
        return ()
    if len(set(raw)) != len(raw):
        problems.add("choices: a choice is listed more than once")
    return tuple(dict.fromkeys(raw))
