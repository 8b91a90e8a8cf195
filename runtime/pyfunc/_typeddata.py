"""Typed data: turn event data or a JSON body into what the handler's annotation declares.

``converter_for(annotation)`` runs once at startup and returns a function (or None when the
annotation asks for nothing: ``Any``, no annotation, or a type pyfunc does not know, which is
passed through untouched as 0.1.0 did). The converters raise :class:`InvalidData` naming the
offending field; the app turns that into a 400.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from typing import Any, Callable, Optional, Union

from ._errors import InvalidData

Converter = Callable[[Any, str], Any]

_SCALARS: dict[type, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    bool: (bool,),
}


def converter_for(annotation: Any) -> Optional[Callable[[Any], Any]]:
    """A one-argument converter for a top-level parameter, or None to pass data through."""
    convert = _converter(annotation)
    if convert is None:
        return None

    def top_level(value: Any) -> Any:
        return convert(value, "data")

    return top_level


def _converter(tp: Any) -> Optional[Converter]:  # noqa: C901 - one branch per kind of type
    if tp is Any or tp is object or tp is None or isinstance(tp, (str, typing.ForwardRef)):
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or (sys.version_info >= (3, 10) and _is_union_type(tp)):
        return _union(args)
    if tp is str:
        return _to_str
    if tp is bytes:
        return _to_bytes
    if tp in _SCALARS:
        return _scalar(tp)
    if tp is dict or origin is dict:
        return _mapping(args[1] if len(args) == 2 else Any)
    if tp is list or origin is list:
        return _sequence(args[0] if args else Any)
    if _is_typeddict(tp):
        return _typeddict(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    if _is_pydantic_model(tp):
        return _pydantic(tp)
    return None


def _is_union_type(tp: Any) -> bool:
    import types

    return isinstance(tp, types.UnionType)


def _where(path: str) -> str:
    return "" if path == "data" else f"field '{path.removeprefix('data.')}': "


def _type_error(path: str, expected: str, value: Any) -> InvalidData:
    detail = f"{_where(path)}expected {expected}, got {type(value).__name__}"
    return InvalidData(detail, [{"loc": path, "msg": f"expected {expected}"}])


def _parsed(value: Any) -> Any:
    """Bytes or text that arrived unparsed (an HTTP body, octet-stream data) as JSON."""
    if isinstance(value, (bytes, bytearray, str)):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidData(f"data is not valid JSON: {exc}") from None
    return value


def _to_str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _type_error(path, "UTF-8 text", value) from None
    raise _type_error(path, "a string", value)


def _to_bytes(value: Any, path: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    return json.dumps(value).encode("utf-8")


def _scalar(tp: type) -> Converter:
    accepted = _SCALARS[tp]

    def convert(value: Any, path: str) -> Any:
        if path == "data":
            value = _parsed(value)
        if isinstance(value, bool) and tp is not bool:
            raise _type_error(path, tp.__name__, value)
        if not isinstance(value, accepted):
            raise _type_error(path, tp.__name__, value)
        return tp(value)

    return convert


def _union(args: tuple[Any, ...]) -> Optional[Converter]:
    options = [a for a in args if a is not type(None)]
    allows_none = len(options) < len(args)
    converters = [_converter(a) for a in options]
    if any(c is None for c in converters):
        return None  # Union with Any or an unknown type: pass through

    def convert(value: Any, path: str) -> Any:
        if value is None and allows_none:
            return None
        errors: list[InvalidData] = []
        for c in converters:
            try:
                return c(value, path)  # type: ignore[misc]
            except InvalidData as exc:
                errors.append(exc)
        raise errors[0]

    return convert


def _mapping(value_type: Any) -> Converter:
    inner = _converter(value_type)

    def convert(value: Any, path: str) -> dict[str, Any]:
        if path == "data":
            value = _parsed(value)
        if not isinstance(value, dict):
            raise _type_error(path, "a JSON object", value)
        if inner is None:
            return value
        return {k: inner(v, f"{path}.{k}") for k, v in value.items()}

    return convert


def _sequence(item_type: Any) -> Converter:
    inner = _converter(item_type)

    def convert(value: Any, path: str) -> list[Any]:
        if path == "data":
            value = _parsed(value)
        if not isinstance(value, list):
            raise _type_error(path, "a JSON array", value)
        if inner is None:
            return value
        return [inner(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return convert


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _fields_of(tp: Any) -> dict[str, Optional[Converter]]:
    try:
        hints = typing.get_type_hints(tp)
    except Exception:
        hints = getattr(tp, "__annotations__", {})
    return {name: _converter(hint) for name, hint in hints.items()}


def _typeddict(tp: Any) -> Converter:
    fields = _fields_of(tp)
    required = tp.__required_keys__

    def convert(value: Any, path: str) -> dict[str, Any]:
        if path == "data":
            value = _parsed(value)
        if not isinstance(value, dict):
            raise _type_error(path, f"a JSON object ({tp.__name__})", value)
        for name in required:
            if name not in value:
                raise _missing(path, name)
        out = dict(value)
        for name, conv in fields.items():
            if conv is not None and name in out:
                out[name] = conv(out[name], f"{path}.{name}")
        return out

    return convert


def _missing(path: str, name: str) -> InvalidData:
    loc = f"{path}.{name}"
    return InvalidData(
        f"field '{loc.removeprefix('data.')}' is required", [{"loc": loc, "msg": "field required"}]
    )


def _dataclass(tp: Any) -> Converter:
    converters = _fields_of(tp)
    fields = [f for f in dataclasses.fields(tp) if f.init]
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]

    def convert(value: Any, path: str) -> Any:
        if path == "data":
            value = _parsed(value)
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _type_error(path, f"a JSON object ({tp.__name__})", value)
        for name in required:
            if name not in value:
                raise _missing(path, name)
        kwargs = {}
        for f in fields:
            if f.name in value:
                conv = converters.get(f.name)
                item = value[f.name]
                kwargs[f.name] = conv(item, f"{path}.{f.name}") if conv else item
        return tp(**kwargs)

    return convert


def _is_pydantic_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return (
        pydantic is not None
        and isinstance(tp, type)
        and issubclass(tp, pydantic.BaseModel)
    )


def _pydantic(tp: Any) -> Converter:
    import pydantic

    def convert(value: Any, path: str) -> Any:
        try:
            if isinstance(value, (bytes, bytearray, str)):
                return tp.model_validate_json(value)
            return tp.model_validate(value)
        except pydantic.ValidationError as exc:
            errors = [
                {"loc": ".".join(str(p) for p in err["loc"]) or path, "msg": err["msg"]}
                for err in exc.errors()
            ]
            first = errors[0] if errors else {"loc": path, "msg": "invalid"}
            raise InvalidData(f"field '{first['loc']}': {first['msg']}", errors) from None

    return convert
