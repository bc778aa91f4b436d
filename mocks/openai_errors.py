"""OpenAI-shaped errors for MockOpenAI, worded like the real API's, and the field checks that raise them."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

JsonObject = dict[str, Any]
# A field check: (param path, value) -> None, raising ApiError when the value is not acceptable.
Check = Callable[[str, Any], None]

_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
}
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
NAME_MAX = 64


class ApiError(Exception):
    """One error response: `status` plus OpenAI's `{"error": {...}}` body."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind
        self.headers = headers

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return orjson.dumps({"error": error})


def type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), "an unknown value")


def quoted_list(values: Sequence[str]) -> str:
    """OpenAI lists choices as `'a', 'b', and 'c'`."""
    quoted = [f"'{value}'" for value in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def invalid_type(param: str, expected: str, value: object) -> ApiError:
    message = f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead."
    return ApiError(400, message, param, "invalid_type")


def invalid_value(param: str, value: object, allowed: Sequence[str]) -> ApiError:
    message = f"Invalid value: '{value}'. Supported values are: {quoted_list(allowed)}."
    return ApiError(400, message, param, "invalid_value")


def missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def empty_array(param: str) -> ApiError:
    message = (
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead."
    )
    return ApiError(400, message, param, "empty_array")


def array_too_long(param: str, limit: int, length: int) -> ApiError:
    message = (
        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
        f"but got an array with length {length} instead."
    )
    return ApiError(400, message, param, "array_above_max_length")


def only_with(param: str, needs: str) -> ApiError:
    message = f"Invalid value for '{param}': '{param}' is only allowed when '{needs}' are specified."
    return ApiError(400, message, param)


def unrecognized(names: Sequence[str]) -> ApiError:
    if len(names) == 1:
        return ApiError(400, f"Unrecognized request argument supplied: {names[0]}")
    return ApiError(400, f"Unrecognized request arguments supplied: {', '.join(names)}")


def model_not_found(model: str) -> ApiError:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return ApiError(404, message, None, "model_not_found")


# --- field checks, built once into per-endpoint tables -------------------------------------------


def _in_range(param: str, value: float, low: float | None, high: float | None, kind: str) -> None:
    if low is not None and value < low:
        bound, expected, code = "below minimum", f">= {low}", "below_min"
    elif high is not None and value > high:
        bound, expected, code = "above maximum", f"<= {high}", "above_max"
    else:
        return
    message = (
        f"Invalid '{param}': {kind} {bound} value. Expected a value {expected}, but got {value} instead."
    )
    raise ApiError(400, message, param, f"{kind}_{code}_value")


def decimal(low: float | None = None, high: float | None = None) -> Check:
    def check(param: str, value: Any) -> None:
        # bool is an int subclass in Python but not a number in JSON Schema.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid_type(param, "a decimal", value)
        _in_range(param, value, low, high, "decimal")

    return check


def integer(low: int | None = None, high: int | None = None) -> Check:
    def check(param: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_type(param, "an integer", value)
        _in_range(param, value, low, high, "integer")

    return check


def of_type(kind: type, expected: str) -> Check:
    def check(param: str, value: Any) -> None:
        if not isinstance(value, kind):
            raise invalid_type(param, expected, value)

    return check


def one_of(*allowed: str) -> Check:
    def check(param: str, value: Any) -> None:
        if not isinstance(value, str):
            raise invalid_type(param, "a string", value)
        if value not in allowed:
            raise invalid_value(param, value, allowed)

    return check


def list_of(item: Check, max_items: int | None = None) -> Check:
    def check(param: str, value: Any) -> None:
        if not isinstance(value, list):
            raise invalid_type(param, "an array", value)
        if max_items is not None and len(value) > max_items:
            raise array_too_long(param, max_items, len(value))
        for index, element in enumerate(value):
            item(f"{param}[{index}]", element)

    return check


def ANY(param: str, value: Any) -> None:
    """Any non-null value: for members whose shape the caller checks itself."""


STRING = of_type(str, "a string")
BOOLEAN = of_type(bool, "a boolean")
OBJECT = of_type(dict, "an object")


def require(obj: JsonObject, key: str, param: str, check: Check) -> Any:
    """Read a required member of a nested object, with the real API's error for each way it can be wrong."""
    value = obj.get(key)
    if value is None:
        raise missing(param)
    check(param, value)
    return value


def check_name(param: str, value: Any) -> None:
    """Function and schema names: ^[a-zA-Z0-9_-]{1,64}$."""
    STRING(param, value)
    if len(value) > NAME_MAX:
        message = (
            f"Invalid '{param}': string too long. Expected a string with maximum length {NAME_MAX}, "
            f"but got a string with length {len(value)} instead."
        )
        raise ApiError(400, message, param, "string_above_max_length")
    if not NAME_PATTERN.fullmatch(value):  # fullmatch: `$` alone would let a trailing newline through
        message = (
            f"Invalid '{param}': string does not match pattern. "
            f"Expected a string that matches the pattern '{NAME_PATTERN.pattern}'."
        )
        raise ApiError(400, message, param, "invalid_value")


def check_fields(body: JsonObject, table: dict[str, Check]) -> None:
    """Reject unknown top-level names, then run each present field's check; null means "not given"."""
    unknown = [name for name in body if name not in table]
    if unknown:
        raise unrecognized(unknown)
    for name, value in body.items():
        if value is not None:
            table[name](name, value)
