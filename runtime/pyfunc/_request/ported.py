"""werkzeug's request parsing, ported to the standard library (BSD-3-Clause, Pallets).

Each function is werkzeug's own, as of the release below (named in each docstring); the light
request (pyfunc._request) uses them so that its answers are werkzeug's. When werkzeug changes one,
tests/integration/test_light_request.py (a differential test against the installed werkzeug)
fails: port the change and move ``WERKZEUG_VERSION``.
"""

from __future__ import annotations

import codecs
import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional

# The werkzeug release these ports follow (scripts/locks pin it for the tests).
WERKZEUG_VERSION = "3.1.9"

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


def _parse_cookie_pairs(cookie: str) -> list[tuple[str, str]]:
    """werkzeug.sansio.http.parse_cookie's pairs (the stdlib's http.cookies parses differently)."""
    if not cookie:
        return []
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
    return out
