"""``pyfunc invoke [URL]``: send a CloudEvent (or a plain HTTP request) and show the reply.

Standard library only (urllib), so it adds no runtime dependency; the request is encoded and
the reply decoded by :mod:`pyfunc._codec`, the same code the server uses, so what you see is
what a Knative broker would send and receive.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any, Optional

DEFAULT_URL = "http://localhost:8080"
DEFAULT_TYPE = "dev.pyfunc.invoke"
DEFAULT_SOURCE = "/pyfunc/invoke"
DEFAULT_DATA = {"message": "Hello from pyfunc invoke"}
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "invoke", help="send a CloudEvent or an HTTP request to a running function",
        description="Send a CloudEvent (binary, structured or batch mode) or, with --http, a plain "
        "HTTP request to a running function, and print the reply: status, attributes, data. "
        "Exits 1 when the reply is not 2xx or the function cannot be reached.",
        epilog="examples:\n"
        "  pyfunc invoke\n"
        "  pyfunc invoke --type com.example.order --data '{\"id\": 7}'\n"
        "  pyfunc invoke --mode batch --data '{\"n\": 1}' --data '{\"n\": 2}'\n"
        "  pyfunc invoke --data @event-data.json --mode structured -e partitionkey=k1\n"
        "  pyfunc invoke http://localhost:8080 --http --data '{\"name\": \"Ada\"}'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, metavar="URL",
                        help=f"where the function listens (default {DEFAULT_URL}; a bare port means localhost)")
    parser.add_argument("-d", "--data", action="append", metavar="JSON|@FILE",
                        help="event data or request body: JSON, or @file (@- for stdin); parsed as JSON unless "
                        "--content-type names another type; repeat it with --mode batch for several events "
                        f"(default for events: {json.dumps(DEFAULT_DATA)})")
    parser.add_argument("-t", "--type", default=DEFAULT_TYPE, help=f"event type (default {DEFAULT_TYPE})")
    parser.add_argument("-s", "--source", default=DEFAULT_SOURCE, help=f"event source (default {DEFAULT_SOURCE})")
    parser.add_argument("--id", default=None, help="event id (default: a new UUID)")
    parser.add_argument("--content-type", default=None, metavar="TYPE",
                        help="datacontenttype / Content-Type of the data (default application/json)")
    parser.add_argument("-m", "--mode", choices=("binary", "structured", "batch"), default="binary",
                        help="CloudEvents content mode (default binary)")
    parser.add_argument("-e", "--extension", action="append", default=[], metavar="NAME=VALUE",
                        help="an extension attribute, e.g. -e partitionkey=k1 (repeatable)")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra HTTP header (repeatable; 'Name: value' works too)")
    parser.add_argument("--http", action="store_true", help="send a plain HTTP request, not a CloudEvent")
    parser.add_argument("-X", "--method", default=None,
                        help="HTTP method for --http (default POST with --data, else GET)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply (default 30)")
    parser.add_argument("--json", action="store_true", help="print the reply as one JSON object (for scripts)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the request that is sent")
    parser.set_defaults(func=invoke)


def invoke(args: argparse.Namespace) -> int:
    from .._errors import PyfuncError

    url = normalize_url(args.url)
    if args.http:
        method, headers, body = build_http_request(args)
    else:
        if args.method:
            raise PyfuncError("--method only applies to --http requests; CloudEvents are always POSTed")
        method, headers, body = "POST", *build_event_request(args)
    headers += [parse_pair(h, "--header") for h in args.header]
    if args.verbose:
        print_request(method, url, headers, body)
    status, reason, reply_headers, reply_body = send(method, url, headers, body, args.timeout)
    from ..testing import decode_reply

    try:
        reply = decode_reply(status, reply_headers, reply_body)
        problem = None
    except PyfuncError as exc:  # the function sent a malformed event: show it raw, say why
        from ..testing import Reply

        reply = Reply(status, {k.lower(): v for k, v in reply_headers}, reply_body, data=reply_body)
        problem = f"the reply is not a valid CloudEvent: {exc}"
    if args.json:
        print(json.dumps(reply_as_json(reply), indent=2, ensure_ascii=False))
    else:
        print_reply(reply, reason)
    if problem:
        print(f"pyfunc: warning: {problem}", file=sys.stderr)
    if not reply.ok:
        print(f"pyfunc: error: the function answered {status} {reason}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- building the request


def normalize_url(text: str) -> str:
    """``8080`` → ``http://localhost:8080``; ``host:port`` → ``http://host:port``."""
    from urllib.parse import urlsplit

    from .._errors import PyfuncError

    text = text.strip()
    if text.isdigit():
        text = f"http://localhost:{text}"
    elif "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PyfuncError(f"{text!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise PyfuncError(f"{text!r} has an invalid port") from None
    return text


def read_data(spec: str, content_type: Optional[str]) -> Any:
    """One ``--data`` value: JSON by default, raw text or bytes for a non-JSON content type."""
    from .. import _codec as codec
    from .._errors import PyfuncError

    raw: Any = spec
    where = "--data"
    if spec.startswith("@"):
        path = spec[1:]
        where = f"--data file {path!r}" if path != "-" else "--data from stdin"
        try:
            raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
        except OSError as exc:
            raise PyfuncError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if content_type is None or codec.is_json(content_type):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise PyfuncError(
                f"{where} is not valid JSON ({exc}); to send text, add --content-type text/plain"
            ) from None
    if isinstance(raw, bytes) and codec.is_text(content_type):
        return raw.decode("utf-8", errors="replace")
    return raw


def build_event_request(args: argparse.Namespace) -> tuple[list[tuple[str, str]], bytes]:
    import uuid

    from .. import _codec as codec
    from .._errors import PyfuncError

    if args.data:
        datas = [read_data(d, args.content_type) for d in args.data]
    elif args.content_type is None or codec.is_json(args.content_type):
        datas = [DEFAULT_DATA]
    else:
        datas = [None]
    if len(datas) > 1 and args.mode != "batch":
        raise PyfuncError("several --data values need --mode batch (one event each)")
    extensions = dict(parse_pair(e, "--extension") for e in args.extension)
    for name in extensions:
        if not name.isalnum() or not name.isascii() or name != name.lower():
            raise PyfuncError(f"extension name {name!r} must be lower-case letters and digits")
    events = []
    for n, data in enumerate(datas, 1):
        event_id = args.id or str(uuid.uuid4())
        if args.id and len(datas) > 1:
            event_id = f"{args.id}-{n}"
        attributes: dict[str, Any] = {"specversion": "1.0", "id": event_id, "source": args.source,
                                      "type": args.type}
        content_type = args.content_type or ("application/json" if data is not None else None)
        if content_type:
            attributes["datacontenttype"] = content_type
        attributes.update(extensions)
        events.append((attributes, data))
    if args.mode == "batch":
        return codec.encode_batch(events)
    if args.mode == "structured":
        return codec.encode_structured(*events[0])
    return codec.encode_binary(*events[0])


def build_http_request(args: argparse.Namespace) -> tuple[str, list[tuple[str, str]], bytes]:
    from .. import _codec as codec
    from .._errors import PyfuncError

    if args.data and len(args.data) > 1:
        raise PyfuncError("an HTTP request has one body: give --data once")
    headers: list[tuple[str, str]] = []
    body = b""
    if args.data:
        value = read_data(args.data[0], args.content_type)
        if args.content_type is None or codec.is_json(args.content_type):
            body = codec.dump_json(value)
        else:
            body = value.encode("utf-8") if isinstance(value, str) else value
        headers.append(("Content-Type", args.content_type or "application/json"))
    method = (args.method or ("POST" if args.data else "GET")).upper()
    return method, headers, body


def parse_pair(text: str, flag: str) -> tuple[str, str]:
    from .._errors import PyfuncError

    separator = "=" if "=" in text and (":" not in text or text.index("=") < text.index(":")) else ":"
    name, sep, value = text.partition(separator)
    if not sep or not name.strip():
        raise PyfuncError(f"{flag} {text!r} should look like NAME=VALUE")
    return name.strip(), value.strip() if separator == ":" else value


# --------------------------------------------------------------------------- sending


def send(method: str, url: str, headers: list[tuple[str, str]], body: bytes,
         timeout: float) -> tuple[int, str, list[tuple[str, str]], bytes]:
    import http.client
    import socket
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    from .._errors import PyfuncError

    request = urllib.request.Request(url, data=body if body or method in ("POST", "PUT", "PATCH") else None,
                                     method=method)
    for name, value in headers:
        request.add_header(name, value)
    # A corporate http_proxy must not capture requests to the function on this machine.
    handlers = [urllib.request.ProxyHandler({})] if urlsplit(url).hostname in LOOPBACK else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.reason, list(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, str(exc.reason), list(exc.headers.items()), exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        hint = " (is the function running? start it with `pyfunc run`)" if isinstance(
            reason, ConnectionRefusedError) else ""
        raise PyfuncError(f"cannot reach {url}: {text}{hint}") from None
    except (socket.timeout, TimeoutError):
        raise PyfuncError(f"no reply from {url} within {timeout:g}s (use --timeout to wait longer)") from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise PyfuncError(f"the connection to {url} failed: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- printing


def print_request(method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> None:
    err = sys.stderr
    print(f"> {method} {url}", file=err)
    for name, value in headers:
        print(f"> {name}: {value}", file=err)
    if body:
        print(">", file=err)
        print(body.decode("utf-8", errors="replace"), file=err)
    print(file=err)


def print_reply(reply: Any, reason: str) -> None:
    status = f"HTTP {reply.status} {reason}".rstrip()
    if reply.mode == "batch":
        print(f"{status} · a batch of {len(reply.events)} CloudEvent{'s' if len(reply.events) != 1 else ''}")
        for n, event in enumerate(reply.events, 1):
            print(f"\nevent {n}/{len(reply.events)}:")
            print_event(event.attributes, event.data)
        return
    if reply.event is not None:
        print(f"{status} · CloudEvent ({reply.mode} mode)")
        print_event(reply.event, reply.data)
        return
    if reply.status == 202 and not reply.body:
        print(f"{status} · accepted, no reply event")
        return
    print(f"{status}" + (f" · {reply.content_type}" if reply.content_type else ""))
    if reply.body:
        print(format_data(reply.data))


def print_event(attributes: dict[str, Any], data: Any) -> None:
    width = max((len(name) for name in attributes), default=0)
    for name in _ordered(attributes):
        print(f"  {name.ljust(width)}  {attributes[name]}")
    print("data:" if data is not None else "data: (none)")
    if data is not None:
        print(format_data(data))


def _ordered(attributes: dict[str, Any]) -> list[str]:
    first = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"]
    return [n for n in first if n in attributes] + sorted(n for n in attributes if n not in first)


def format_data(data: Any) -> str:
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
            if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
                return text
        except UnicodeDecodeError:
            pass
        encoded = base64.b64encode(bytes(data)).decode("ascii")
        return f"<{len(data)} bytes, base64: {encoded[:120]}{'…' if len(encoded) > 120 else ''}>"
    if isinstance(data, str):
        return data
    return json.dumps(data, indent=2, ensure_ascii=False)


def reply_as_json(reply: Any) -> dict[str, Any]:
    def jsonable(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
        return value

    return {
        "status": reply.status,
        "headers": reply.headers,
        "mode": reply.mode,
        "events": [{"attributes": e.attributes, "data": jsonable(e.data)} for e in reply.events],
        "data": jsonable(reply.data) if reply.mode != "batch" else None,
    }
