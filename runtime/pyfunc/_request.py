"""The request an HTTP function's ``req``/``request`` parameter gets: ``flask.Request``'s API, Flask on demand.

Building a ``flask.Request`` imports Flask and werkzeug (about 90 ms and 14 MB, more than the
rest of a cold start). Most HTTP functions read a few things: ``req.args``, ``req.get_json()``,
``req.headers``, ``req.method``, ``req.path``. :class:`Request` implements that common read API
here, with werkzeug 3's exact semantics (the parsing helpers below are ports of werkzeug's own,
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

import codecs
import re
from functools import cached_property
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from ._failures import answers_itself

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Optional

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

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
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

    def __init__(self, environ: dict[str, Any]) -> None:
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
        return _parse_cookie(";".join(self.headers.getlist("Cookie")))

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


# ---------------------------------------------------------------- werkzeug's parsing, ported

def _codec_error_url_quote(e: UnicodeError) -> tuple[str, int]:
    """Re-quote invalid bytes after unquoting (werkzeug.urls._codec_error_url_quote)."""
    out = quote(e.object[e.start:e.end], safe="")  # type: ignore[attr-defined]
    return out, e.end  # type: ignore[attr-defined]


_URL_QUOTE = "pyfunc.url_quote"
codecs.register_error(_URL_QUOTE, _codec_error_url_quote)


def _wsgi_decoding_dance(s: str) -> str:
    return s.encode("latin1").decode(errors="replace")


# The patterns are compiled on first use: compiling them all costs more than the rest of the import.
_PATTERNS: dict[str, tuple[Any, int]] = {
    "host": (r"""
    (
        [a-z0-9.-]+  # domain or ipv4
    |
        \[[a-f0-9]*:[a-f0-9.:]+]  # ipv6
    )
    (?::([1-9][0-9]{,4}))?  # optional port
    """, re.ASCII | re.IGNORECASE | re.VERBOSE),
    "plain_int": (r"-?[0-9]+", re.ASCII),
    "unslash": (r"\\(.)", re.ASCII),
    "parameter_key": (r"([\w!#$%&'*+\-.^`|~]+)=", re.ASCII),
    "parameter_mark": (r"(?:\*(\d+))?(\*)?$", re.ASCII),
    "parameter_token_value": (r"[\w!#$%&'*+\-.^`|~]+", re.ASCII),
    "charset_value": (r"""
    ([\w!#$%&*+\-.^`|~]*)'  # charset part, could be empty
    [\w!#$%&*+\-.^`|~]*'  # don't care about language part, usually empty
    ([\w!#$%&'*+\-.^`|~]+)$  # one or more token chars with percent encoding
    """, re.ASCII | re.VERBOSE),
    "parameter_delimiter": (r";[ \t]*", 0),
    "cookie": (r"""
    [ \t]*  # ignore leading space
    ([^ \t=";]+)  # key
    (?:[ \t]*=[ \t]*  # optional =value, ignoring invalid space
        (
            "(?:[^\\"]|\\.)*"  # quoted value with backslash escapes
        |
            [^ \t";]*  # token value
        )
    )?
    [ \t]*  # ignore trailing space
    (?:;|\Z)  # only if followed by semicolon or end
    """, re.ASCII | re.VERBOSE),
    "cookie_unslash": (rb"\\([0-3][0-7]{2}|.)", 0),
}
_compiled: dict[str, Any] = {}


def _re(name: str) -> Any:
    pattern = _compiled.get(name)
    if pattern is None:
        pattern = _compiled[name] = re.compile(*_PATTERNS[name])
    return pattern


def _host_is_trusted(hostname: Optional[str], trusted_list: Optional[Iterable[str]]) -> bool:
    if not hostname:
        return False
    if (m := _re("host").fullmatch(hostname)) is None:
        return False
    hostname, port_str = m.groups()
    if port_str and not (1 <= int(port_str) <= 65535):
        return False
    if not trusted_list:
        return True
    if isinstance(trusted_list, str):
        trusted_list = [trusted_list]
    for ref in trusted_list:
        suffix_match = ref.startswith(".")
        if suffix_match:
            ref = ref[1:]
        try:
            ref = ref.partition(":")[0].encode("idna").decode("ascii")
        except UnicodeEncodeError:
            return False
        if ref == hostname or (suffix_match and hostname.endswith(f".{ref}")):
            return True
    return False


def _get_host(scheme: str, host_header: Optional[str], server: Optional[tuple[str, Optional[int]]],
              trusted_hosts: Optional[Iterable[str]]) -> str:
    if host_header is not None:
        host = host_header
    elif server is not None and server[1] is not None:
        host = server[0]
        if ":" in host and host[0] != "[":
            host = f"[{host}]"
        host = f"{host}:{server[1]}"
    else:
        return ""
    if scheme in ("http", "ws"):
        host = host.removesuffix(":80")
    elif scheme in ("https", "wss"):
        host = host.removesuffix(":443")
    if not _host_is_trusted(host, trusted_hosts):
        if trusted_hosts:
            from werkzeug.exceptions import SecurityError

            raise SecurityError(f"Host {host!r} is not trusted.")
        return ""
    return host


def _make_unquote_part(chars: str) -> Callable[[str], str]:
    choices = "|".join(f"{ord(c):02X}" for c in sorted(chars))
    pattern = re.compile(f"((?:%(?:{choices}))+)", re.I)

    def _unquote_partial(value: str) -> str:
        parts = iter(pattern.split(value))
        out = []
        for part in parts:
            out.append(unquote(part, "utf-8", _URL_QUOTE))
            out.append(next(parts, ""))
        return "".join(out)

    return _unquote_partial


_always_unsafe = bytes((*range(0x21), 0x25, 0x7F)).decode()
_UNQUOTE_KEEP = {"fragment": _always_unsafe, "query": _always_unsafe + "&=+#", "path": _always_unsafe + "/?#",
                 "user": _always_unsafe + ":@/?#"}
_unquoters: dict[str, Callable[[str], str]] = {}


def _unquote_part(part: str, value: str) -> str:
    unquoter = _unquoters.get(part)
    if unquoter is None:
        unquoter = _unquoters[part] = _make_unquote_part(_UNQUOTE_KEEP[part])
    return unquoter(value)


def _decode_idna(domain: str) -> str:
    try:
        data = domain.encode("ascii")
    except UnicodeEncodeError:
        return domain
    try:
        return data.decode("idna")
    except UnicodeDecodeError:
        pass
    parts = []
    for part in data.split(b"."):
        try:
            parts.append(part.decode("idna"))
        except UnicodeDecodeError:
            parts.append(part.decode("ascii"))
    return ".".join(parts)


def _uri_to_iri(uri: str) -> str:
    parts = urlsplit(uri)
    path = _unquote_part("path", parts.path)
    query = _unquote_part("query", parts.query)
    fragment = _unquote_part("fragment", parts.fragment)
    netloc = _decode_idna(parts.hostname) if parts.hostname else ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username is not None:
        auth = _unquote_part("user", parts.username)
        if parts.password is not None:
            auth = f"{auth}:{_unquote_part('user', parts.password)}"
        netloc = f"{auth}@{netloc}"
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _get_current_url(scheme: str, host: str, root_path: Optional[str] = None, path: Optional[str] = None,
                     query_string: Optional[bytes] = None) -> str:
    url = [scheme, "://", host]
    if root_path is None:
        url.append("/")
        return _uri_to_iri("".join(url))
    url.append(quote(root_path.rstrip("/"), safe="!$&'()*+,/:;=@%"))
    url.append("/")
    if path is None:
        return _uri_to_iri("".join(url))
    url.append(quote(path.lstrip("/"), safe="!$&'()*+,/:;=@%"))
    if query_string:
        url.append("?")
        url.append(quote(query_string, safe="!$&'()*+,/:;=?@%"))
    return _uri_to_iri("".join(url))


def _get_content_length(content_length: Optional[str], transfer_encoding: Optional[str]) -> Optional[int]:
    if (transfer_encoding is not None and "chunked" in {item.lower() for item in _parse_list_header(
            transfer_encoding)}) or content_length is None:
        return None
    value = content_length.strip(" \t")
    if _re("plain_int").fullmatch(value) is None:
        return 0
    return max(0, int(value))


def _unquote_header_value(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        unslashed: str = _re("unslash").sub(r"\g<1>", value[1:-1])
        return unslashed
    return value


def _parse_list_header(value: str) -> list[str]:
    items = []
    item = ""
    escape = quoted = False
    for char in value:
        if escape:
            escape = False
            item += char
            continue
        if quoted:
            if char == "\\":
                escape = True
            elif char == '"':
                quoted = False
            item += char
            continue
        if char == ",":
            items.append(item)
            item = ""
            continue
        if char == '"':
            quoted = True
        item += char
    if quoted:
        return []
    items.append(item)
    return [_unquote_header_value(item) for item in (item.strip(" \t") for item in items) if item]


def _parse_options_header(value: Optional[str]) -> tuple[str, dict[str, str]]:  # noqa: C901 - werkzeug's
    if value is None:
        return "", {}
    value, _, rest = value.partition(";")
    value = value.strip(" \t")
    rest = rest.strip(" \t")
    if not value or not rest:
        return value, {}
    parts: list[tuple[str, str]] = []
    scan_pos = 0
    length = len(rest)
    while scan_pos < length:
        if (m_key := _re("parameter_key").match(rest, scan_pos)) is not None:
            pk = m_key.group(1).lower()
            scan_pos = m_key.end()
            if (m_value := _re("parameter_token_value").match(rest, scan_pos)) is not None:
                parts.append((pk, m_value.group()))
            elif rest.startswith('"', scan_pos):
                quote_pos = scan_pos + 1
                while quote_pos < length:
                    if rest.startswith(("\\\\", '\\"'), quote_pos):
                        quote_pos += 2
                    elif rest.startswith('"', quote_pos):
                        quote_pos += 1
                        parts.append((pk, rest[scan_pos:quote_pos]))
                        scan_pos = quote_pos
                        break
                    else:
                        quote_pos += 1
                else:
                    break
        if m_delim := _re("parameter_delimiter").search(rest, scan_pos):
            scan_pos = m_delim.end()
        else:
            break
    options: dict[str, str] = {}
    continuations: dict[str, list[str]] = {}
    continuation_encodings: dict[str, str] = {}
    for pk, pv in parts:
        encoding: Optional[str] = None
        has_continuation = has_charset = False
        if (m_mark := _re("parameter_mark").search(pk)) is not None and m_mark.end() - m_mark.start() > 0:
            has_continuation = m_mark.group(1) is not None
            has_charset = m_mark.group(2) is not None
            pk = pk[:m_mark.start()]
        if has_charset:
            if (m_charset := _re("charset_value").match(pv)) is not None:
                encoding, pv = m_charset.groups()
                encoding = encoding.lower()
            if not encoding and has_continuation:
                encoding = continuation_encodings.get(pk)
            if encoding in {"ascii", "us-ascii", "utf-8", "iso-8859-1"}:
                pv = unquote(pv, encoding=encoding)
        else:
            pv = _unquote_header_value(pv).replace("%22", '"')
        if has_continuation:
            if pk in options:
                del options[pk]
            if pk in continuations:
                continuations[pk].append(pv)
            else:
                continuations[pk] = [pv]
            if encoding:
                continuation_encodings[pk] = encoding
        else:
            if pk in continuations:
                del continuations[pk]
                continuation_encodings.pop(pk, None)
            options[pk] = pv
    options.update({pk: "".join(pv) for pk, pv in continuations.items()})
    return value, options


def _cookie_unslash_replace(m: re.Match[bytes]) -> bytes:
    v = m.group(1)
    if len(v) == 1:
        return v
    return int(v, 8).to_bytes(1, "big")


def _parse_cookie(cookie: str) -> MultiDict:
    """werkzeug.sansio.http.parse_cookie (the stdlib's http.cookies parses differently)."""
    if not cookie:
        return MultiDict()
    out = []
    pos = 0
    while True:
        if (m := _re("cookie").match(cookie, pos)) is None:
            if (pos := cookie.find(";", pos) + 1) == 0:
                break
            continue
        ck, cv = m.groups()
        pos = m.end()
        if cv is None:
            cv = ""
        if cv.startswith('"') and cv.endswith('"'):
            cv = _re("cookie_unslash").sub(_cookie_unslash_replace, cv[1:-1].encode()).decode(errors="replace")
        out.append((ck, cv))
    return MultiDict(out)
