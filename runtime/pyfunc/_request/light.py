"""The light request an unannotated ``req``/``request`` gets: ``flask.Request``'s API, Flask on demand.

Building a ``flask.Request`` imports Flask and werkzeug (about 90 ms and 14 MB, more than the
rest of a cold start). Most HTTP functions read a few things: ``req.args``, ``req.get_json()``,
``req.headers``, ``req.method``, ``req.path``. :class:`Request` implements that common read API
here, with werkzeug 3's exact semantics (the parsing helpers in ported.py are ports of werkzeug's own,
BSD-3-Clause, Pallets), on the standard library only. Anything else (``form``, ``files``,
``values``, ``authorization``, ``accept_*``, ``user_agent``, …) builds the real ``flask.Request``
over the same environ on first use (given the body when it was already read) and is delegated to
it: it returns, and raises, exactly what Flask's does.

Errors keep their HTTP answers: a JSON body that does not parse or is not JSON raises werkzeug's
own ``BadRequest`` / ``UnsupportedMediaType`` (werkzeug.exceptions is imported then, on the error
path only); a missing key in ``req.args[...]`` or ``req.cookies[...]`` raises this module's
:class:`BadRequestKeyError`, a ``KeyError`` that pyfunc answers with werkzeug's 400 page.

Not a ``flask.Request``: ``isinstance(req, flask.Request)`` is False. A parameter annotated
``flask.Request`` (and any handler whose module uses Flask's globals) gets the real one.
"""

from __future__ import annotations

from functools import cached_property
from urllib.parse import parse_qsl

from .._failures import answers_itself
from .ported import (
    _URL_QUOTE,
    _get_content_length,
    _get_current_url,
    _get_host,
    _parse_cookie_pairs,
    _parse_options_header,
    _wsgi_decoding_dance,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Optional

    from .._types import Environ

_MISSING: Any = object()
_FORM_MIMETYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class BadRequestKeyError(KeyError):
    """A key missing from ``req.args`` or ``req.cookies``: a ``KeyError`` that pyfunc answers with a 400.

    werkzeug's ``BadRequestKeyError`` is also a ``werkzeug.exceptions.BadRequest``; this one is
    not (werkzeug is not imported for it), but it produces the same response.
    """

    code = 400
    description = "The browser (or proxy) sent a request that this server could not understand."

    def __str__(self) -> str:
        return f"400 Bad Request: {self.description}"

    def get_response(self) -> Any:
        """werkzeug's 400 page for it, as werkzeug's ``BadRequestKeyError`` answers (werkzeug imported now)."""
        from werkzeug.exceptions import BadRequestKeyError as WerkzeugBadRequestKeyError

        return WerkzeugBadRequestKeyError(self.args[0] if self.args else None).get_response()


answers_itself(BadRequestKeyError)  # the app answers it with get_response(), as werkzeug's own


def _immutable(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise TypeError(f"{type(self).__name__!r} objects are immutable")


class MultiDict(dict):  # type: ignore[type-arg]
    """A read-only multi-dict with werkzeug's ``ImmutableMultiDict`` API (``req.args``, ``req.cookies``).

    A ``dict`` of lists, like werkzeug's: ``dict(d)``, ``json.dumps(d)`` and ``d[key]`` see the
    first value of each key, ``getlist`` all of them. Methods not written here are werkzeug's,
    on a real ``ImmutableMultiDict`` built on first use.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        lists: dict[str, list[str]] = {}
        for key, value in pairs:
            lists.setdefault(key, []).append(value)
        super().__init__(lists)

    def __getitem__(self, key: str) -> str:
        if key in self:
            values = dict.__getitem__(self, key)
            if values:
                return values[0]  # type: ignore[no-any-return]
        raise BadRequestKeyError(key)

    def get(self, key: str, default: Any = None, type: Optional[Callable[[str], Any]] = None) -> Any:  # noqa: A002
        try:
            value = self[key]
        except KeyError:
            return default
        if type is None:
            return value
        try:
            return type(value)
        except (ValueError, TypeError):
            return default

    def getlist(self, key: str, type: Optional[Callable[[str], Any]] = None) -> list[Any]:  # noqa: A002
        try:
            values: list[str] = dict.__getitem__(self, key)
        except KeyError:
            return []
        if type is None:
            return list(values)
        result = []
        for value in values:
            try:
                result.append(type(value))
            except (ValueError, TypeError):
                pass
        return result

    def items(self, multi: bool = False) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        for key, values in dict.items(self):
            if multi:
                for value in values:
                    yield key, value
            else:
                yield key, values[0]

    def lists(self) -> Iterator[tuple[str, list[str]]]:
        for key, values in dict.items(self):
            yield key, list(values)

    def values(self) -> Iterator[str]:  # type: ignore[override]
        for values in dict.values(self):
            yield values[0]

    def listvalues(self) -> Iterator[list[str]]:
        return iter(dict.values(self))

    def to_dict(self, flat: bool = True) -> dict[str, Any]:
        if flat:
            return dict(self.items())
        return dict(self.lists())

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self)

    def __repr__(self) -> str:
        return f"ImmutableMultiDict({list(self.items(multi=True))!r})"

    def copy(self) -> Any:
        return self._werkzeug().copy()

    def __copy__(self) -> MultiDict:
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._werkzeug(), name)

    def _werkzeug(self) -> Any:
        from werkzeug.datastructures import ImmutableMultiDict

        return ImmutableMultiDict(list(self.items(multi=True)))

    __setitem__ = __delitem__ = setdefault = pop = popitem = clear = update = _immutable
    add = setlist = setlistdefault = poplist = popitemlist = _immutable


class Headers:
    """The request headers, read from the WSGI environ: werkzeug's ``EnvironHeaders`` API.

    Case-insensitive (``headers["content-type"]``), ``get(key, default, type)``, ``getlist``,
    iteration over ``(name, value)`` pairs with names title-cased. Methods not written here are
    werkzeug's, on a real ``EnvironHeaders`` built on first use.
    """

    light_headers = True  # a handler may return it as a response's headers, as werkzeug's (_responses)

    __slots__ = ("environ",)

    def __init__(self, environ: Environ) -> None:
        self.environ = environ

    def _get_key(self, key: str) -> str:
        if not isinstance(key, str):
            raise BadRequestKeyError(key)
        key = key.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.environ[key]  # type: ignore[no-any-return]
        return self.environ[f"HTTP_{key}"]  # type: ignore[no-any-return]

    __getitem__ = _get_key

    def get(self, key: str, default: Any = None, type: Optional[Callable[[str], Any]] = None) -> Any:  # noqa: A002
        try:
            value = self._get_key(key)
        except KeyError:
            return default
        if type is None:
            return value
        try:
            return type(value)
        except ValueError:
            return default

    def getlist(self, key: str, type: Optional[Callable[[str], Any]] = None) -> list[Any]:  # noqa: A002
        ikey = key.lower()
        result = []
        for k, v in self:
            if k.lower() == ikey:
                if type is None:
                    result.append(v)
                    continue
                try:
                    result.append(type(v))
                except ValueError:
                    continue
        return result

    def get_all(self, name: str) -> list[str]:
        return self.getlist(name)

    def __contains__(self, key: object) -> bool:
        try:
            self._get_key(key)  # type: ignore[arg-type]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for key, value in self.environ.items():
            if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                yield key[5:].replace("_", "-").title(), value
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                yield key.replace("_", "-").title(), value

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def items(self, lower: bool = False) -> Iterator[tuple[str, str]]:
        for key, value in self:
            yield (key.lower() if lower else key), value

    def keys(self, lower: bool = False) -> Iterator[str]:
        for key, _ in self.items(lower):
            yield key

    def values(self) -> Iterator[str]:
        for _, value in self:
            yield value

    def to_wsgi_list(self) -> list[tuple[str, str]]:
        return list(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.environ is other.environ

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return "\r\n".join([f"{key}: {value}" for key, value in self] + ["\r\n"])

    def __repr__(self) -> str:
        return f"EnvironHeaders({list(self)!r})"

    def copy(self) -> Any:
        raise TypeError("cannot create 'EnvironHeaders' copies")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from werkzeug.datastructures import EnvironHeaders

        return getattr(EnvironHeaders(self.environ), name)


class Request:
    """``flask.Request``'s read API over one WSGI environ; the rest delegated to a real one built on demand."""

    # werkzeug's class attributes, for code that reads them.
    trusted_hosts: Optional[list[str]] = None
    max_content_length: Optional[int] = None

    def __init__(self, environ: Environ) -> None:
        self.environ = environ
        self._flask: Any = None  # the real flask.Request, once something needs it
        self._cached_data: Optional[bytes] = None
        self._consumed = False  # the input was read without caching it
        self._cached_json: tuple[Any, Any] = (Ellipsis, Ellipsis)

    # ------------------------------------------------------------ the fallback

    def _real(self) -> Any:
        """The real ``flask.Request`` over the same environ (and body, once read), built once."""
        if self._flask is None:
            from flask import Request as FlaskRequest

            environ, data = self.environ, self._cached_data
            if data is not None:  # the body was read here: Flask's request reads it again, as its own
                import io

                environ = {**environ, "wsgi.input": io.BytesIO(data)}
            request = FlaskRequest(environ)
            if data is not None:
                request.get_data(cache=True)  # the state Flask's request has after reading it itself
            self._flask = request
        return self._flask

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_flask", "_cached_data", "_consumed", "_cached_json", "environ"):
            raise AttributeError(name)
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FLASK_SETTINGS:  # a setting of werkzeug's parsing: from now on it is Flask's request
            real = self._real()
            setattr(real, name, value)
            object.__setattr__(self, "__class__", _Delegating)
            return
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        try:
            url = self.url
        except Exception as e:  # noqa: BLE001 - werkzeug's repr does the same
            url = f"(invalid URL: {e})"
        return f"<Request {url!r} [{self.method}]>"

    def close(self) -> None:
        if self._flask is not None:
            self._flask.close()

    def __enter__(self) -> Request:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------ URL and method

    @cached_property
    def method(self) -> str:
        return str(self.environ.get("REQUEST_METHOD", "GET")).upper()

    @cached_property
    def scheme(self) -> str:
        return self.environ.get("wsgi.url_scheme", "http")  # type: ignore[no-any-return]

    @property
    def is_secure(self) -> bool:
        return self.scheme in ("https", "wss")

    @cached_property
    def server(self) -> Optional[tuple[str, Optional[int]]]:
        name = self.environ.get("SERVER_NAME")
        if name is None:
            return None
        try:
            port: Optional[int] = int(self.environ.get("SERVER_PORT", None))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            port = None  # a unix socket
        return name, port

    @cached_property
    def root_path(self) -> str:
        return _wsgi_decoding_dance(self.environ.get("SCRIPT_NAME") or "").rstrip("/")

    @property
    def script_root(self) -> str:
        return self.root_path

    @cached_property
    def path(self) -> str:
        return "/" + _wsgi_decoding_dance(self.environ.get("PATH_INFO") or "").lstrip("/")

    @cached_property
    def query_string(self) -> bytes:
        return str(self.environ.get("QUERY_STRING", "")).encode("latin1")

    @cached_property
    def full_path(self) -> str:
        return f"{self.path}?{self.query_string.decode()}"

    @cached_property
    def host(self) -> str:
        return _get_host(self.scheme, self.headers.get("host"), self.server, self.trusted_hosts)

    @cached_property
    def url(self) -> str:
        return _get_current_url(self.scheme, self.host, self.root_path, self.path, self.query_string)

    @cached_property
    def base_url(self) -> str:
        return _get_current_url(self.scheme, self.host, self.root_path, self.path)

    @cached_property
    def root_url(self) -> str:
        return _get_current_url(self.scheme, self.host, self.root_path)

    @cached_property
    def url_root(self) -> str:
        return self.root_url

    @cached_property
    def host_url(self) -> str:
        return _get_current_url(self.scheme, self.host)

    @cached_property
    def args(self) -> MultiDict:
        return MultiDict(parse_qsl(self.query_string.decode(), keep_blank_values=True, errors=_URL_QUOTE))

    @property
    def remote_addr(self) -> Optional[str]:
        return self.environ.get("REMOTE_ADDR")

    # ------------------------------------------------------------ headers

    @cached_property
    def headers(self) -> Headers:
        return Headers(self.environ)

    @cached_property
    def cookies(self) -> MultiDict:
        return MultiDict(_parse_cookie_pairs(";".join(self.headers.getlist("Cookie"))))

    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("Content-Type")  # type: ignore[no-any-return]

    @property
    def content_encoding(self) -> Optional[str]:
        return self.headers.get("Content-Encoding")  # type: ignore[no-any-return]

    @property
    def referrer(self) -> Optional[str]:
        return self.headers.get("Referer")  # type: ignore[no-any-return]

    @property
    def origin(self) -> Optional[str]:
        return self.headers.get("Origin")  # type: ignore[no-any-return]

    @cached_property
    def content_length(self) -> Optional[int]:
        return _get_content_length(self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding"))

    @cached_property
    def _parsed_content_type(self) -> tuple[str, dict[str, str]]:
        return _parse_options_header(self.headers.get("Content-Type", ""))

    @property
    def mimetype(self) -> str:
        return self._parsed_content_type[0].lower()

    @property
    def mimetype_params(self) -> dict[str, str]:
        return self._parsed_content_type[1]

    @property
    def is_json(self) -> bool:
        mt = self.mimetype
        return mt == "application/json" or mt.startswith("application/") and mt.endswith("+json")

    # ------------------------------------------------------------ body

    def _read(self) -> bytes:
        """werkzeug's ``get_input_stream(environ).read()`` with no ``max_content_length`` (Flask's bare request)."""
        if self._consumed:
            return b""
        environ = self.environ
        stream = environ["wsgi.input"]
        if "wsgi.input_terminated" in environ:  # the server ends the stream (waitress does)
            data: bytes = stream.read()
            return data
        length = self.content_length
        if length is None:
            return b""
        chunks, left = [], length
        while left > 0:
            chunk = stream.read(left)
            if not chunk:
                from werkzeug.exceptions import ClientDisconnected

                raise ClientDisconnected()
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False) -> Any:
        data = self._cached_data
        if data is None:
            if self._flask is not None or (parse_form_data and self.mimetype in _FORM_MIMETYPES):
                # Flask's request has (or is about to have) the stream: it answers from now on.
                return self._real().get_data(cache=cache, as_text=as_text, parse_form_data=parse_form_data)
            data = self._read()
            if cache:
                self._cached_data = data
            else:
                self._consumed = True
        if as_text:
            return data.decode(errors="replace")
        return data

    @cached_property
    def data(self) -> bytes:
        return self.get_data(parse_form_data=True)  # type: ignore[no-any-return]

    @property
    def json(self) -> Any:
        return self.get_json()

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            if not silent:
                return self.on_json_loading_failed(None)
            return None
        data = self.get_data(cache=cache)
        import json

        try:
            rv = json.loads(data)
        except ValueError as e:
            if silent:
                rv = None
                if cache:
                    self._cached_json = (self._cached_json[0], rv)
            else:
                rv = self.on_json_loading_failed(e)
                if cache:
                    self._cached_json = (rv, self._cached_json[1])
        else:
            if cache:
                self._cached_json = (rv, rv)
        return rv

    def on_json_loading_failed(self, e: Optional[ValueError]) -> Any:
        """As Flask's request outside an app context: 400 for JSON that does not parse, 415 for no JSON."""
        from werkzeug.exceptions import BadRequest, UnsupportedMediaType

        if e is not None:
            try:
                raise BadRequest(f"Failed to decode JSON object: {e}")
            except BadRequest as ebr:
                raise BadRequest() from ebr
        raise UnsupportedMediaType(
            "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
        )


class _Delegating(Request):
    """A :class:`Request` after one of werkzeug's settings was changed on it: Flask's request answers everything."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("_real", "_flask", "__class__", "__dict__", "environ"):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_real")(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real(), name, value)


# Per-request settings of werkzeug/Flask that change how the request parses what it reads.
_FLASK_SETTINGS = frozenset((
    "max_content_length", "max_form_memory_size", "max_form_parts", "trusted_hosts", "json_module",
    "parameter_storage_class", "dict_storage_class", "list_storage_class", "user_agent_class",
    "form_data_parser_class", "shallow",
))
