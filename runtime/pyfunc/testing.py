"""Call a function in-process, exactly as the server would, from a test.

The client builds the real WSGI app the server runs (same discovery, binding, typed data,
encoding and error handling) and drives it with werkzeug's test client, so a test exercises
everything but the socket. Lifecycle hooks run too: ``start(cfg)`` when the client is created,
``stop()`` when it is closed.

.. code-block:: python

    from pathlib import Path

    import pytest
    from pyfunc.testing import FunctionClient


    @pytest.fixture
    def client():
        with FunctionClient(Path(__file__).parent) as client:
            yield client


    def test_echo(client):
        reply = client.event(type="com.example.ping", data={"message": "hi"})
        assert reply.status == 200
        assert reply.event["type"] == "com.example.reply"
        assert reply.data == {"message": "hi"}


    def test_http(client):
        reply = client.post("/", json={"name": "Ada"})
        assert reply.ok and reply.json == {"hello": "Ada"}

Events may also be the installed cloudevents SDK's own objects, of either major: ``send`` and
``batch`` take them (1.x's ``cloudevents.http.CloudEvent``, 2.x's
``cloudevents.core.v1.event.CloudEvent`` and its ``cloudevents.v1.*`` compat types…), and
``Reply.cloudevent(cls)`` gives the reply back as one, built as a handler parameter annotated
``cls`` would receive it.
"""

from __future__ import annotations

import json as jsonlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

from . import _codec as codec
from ._codec import BATCH, BINARY, STRUCTURED, Event
from ._config import Config
from ._errors import HandlerLoadError, PyfuncError

__all__ = ["FunctionClient", "Reply", "Event", "make_event", "HandlerLoadError"]

DEFAULT_TYPE = "dev.pyfunc.test"
DEFAULT_SOURCE = "/pyfunc/testing"


def make_event(
    data: Any = None,
    *,
    type: str = DEFAULT_TYPE,
    source: str = DEFAULT_SOURCE,
    id: Optional[str] = None,
    datacontenttype: Optional[str] = None,
    **extensions: Any,
) -> Event:
    """A CloudEvent with sensible defaults: a fresh ``id``, ``specversion`` 1.0, JSON data.

    Extension attributes are keyword arguments (``make_event(data, partitionkey="k")``).
    """
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type,
    }
    if datacontenttype is None and data is not None and not isinstance(data, (bytes, bytearray)):
        datacontenttype = "application/json"
    if datacontenttype is not None:
        attributes["datacontenttype"] = datacontenttype
    for name, value in extensions.items():
        if value is not None:
            attributes[name.lower()] = value
    return Event(attributes, data)


@dataclass
class Reply:
    """What the function answered: the HTTP response, decoded the way a client would.

    For a CloudEvent reply ``event`` holds its attributes and ``data`` its data (decoded by
    ``datacontenttype``); a batch reply fills ``events``. For a plain HTTP reply ``data`` is
    the body decoded by Content-Type (JSON → Python value, text → ``str``, else ``bytes``).
    """

    status: int
    headers: dict[str, str]
    body: bytes
    mode: Optional[str] = None  # "binary", "structured", "batch"; None when no event came back
    event: Optional[dict[str, Any]] = None
    data: Any = None
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("content-type")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def json(self) -> Any:
        """The body parsed as JSON (a problem+json error body, too)."""
        return jsonlib.loads(self.body) if self.body else None

    def cloudevent(self, cls: Any = None) -> Any:
        """The reply event as a cloudevents SDK object of the installed major: what a handler
        parameter annotated ``cls`` would receive (attributes as sent, ``time`` a ``datetime``
        for 2.x's ``cloudevents.core.v1.event.CloudEvent``). ``cls`` defaults to what an
        unannotated ``event`` parameter gets: ``cloudevents.http.CloudEvent`` (1.x), the same
        class from ``cloudevents.v1.http`` (2.x). For a batch reply see :meth:`cloudevents`."""
        if self.mode is None or self.mode == BATCH:
            what = "a batch: use cloudevents()" if self.mode == BATCH else "not a CloudEvent"
            raise PyfuncError(f"this reply is {what}")
        return _to_cloudevent(self.events[0], cls)

    def cloudevents(self, cls: Any = None) -> list[Any]:
        """Every event of the reply (one, or a batch's) as SDK objects, as :meth:`cloudevent`."""
        return [_to_cloudevent(event, cls) for event in self.events]

    def __repr__(self) -> str:
        if self.mode == BATCH:
            what = f"{len(self.events)} events"
        elif self.event is not None:
            what = f"event type={self.event.get('type')!r} data={self.data!r}"
        else:
            what = f"body={self.body[:200]!r}"
        return f"<Reply {self.status} {what}>"


class FunctionClient:
    """The function in ``path`` (a directory or a ``.py`` file), ready to be called.

    ``handler`` picks the function as ``PYTHON_HANDLER`` would (``module.func``); for a file
    it may be just the function's name. ``env`` holds environment variables set while the
    client is open (``start(cfg)`` and the handler see them). Any other keyword is a server
    setting (``timeout=2``, ``reply_mode="structured"``…), as in :class:`pyfunc._config.Config`.
    Use it as a context manager, or call :meth:`close`, so the ``stop()`` hook runs.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], handler: Optional[str] = None,
                 *, env: Optional[Mapping[str, str]] = None, **settings: Any) -> None:
        from werkzeug.test import Client

        from ._server import build_app, run_start_hook

        location = Path(path)
        if location.is_file():
            directory, module = location.parent, location.stem
            if handler and ("." in handler or ":" in handler):
                target = handler
            else:  # no "handler" function in that file: discovery takes its one public function
                target = f"{module}.{handler or 'handler'}"
        else:
            directory, target = location, handler or "handler.handler"
        settings.setdefault("access_log", False)
        self.config = Config(directory=str(directory), handler=target, **settings)
        self._env = dict(env or {})
        self._saved_env = {name: os.environ.get(name) for name in self._env}
        os.environ.update(self._env)
        try:
            self.app = build_app(self.config)
            run_start_hook(self.app.loaded)
        except BaseException:
            self._restore_env()
            raise
        self._client = Client(self.app)
        self._closed = False

    # ------------------------------------------------------------------ events

    def event(
        self,
        data: Any = None,
        *,
        type: str = DEFAULT_TYPE,
        source: str = DEFAULT_SOURCE,
        id: Optional[str] = None,
        datacontenttype: Optional[str] = None,
        mode: str = BINARY,
        headers: Optional[Mapping[str, str]] = None,
        **extensions: Any,
    ) -> Reply:
        """Send one CloudEvent in ``mode`` ``"binary"`` (default) or ``"structured"``."""
        event = make_event(data, type=type, source=source, id=id, datacontenttype=datacontenttype, **extensions)
        return self.send(event, mode=mode, headers=headers)

    def send(self, event: Any, *, mode: str = BINARY, headers: Optional[Mapping[str, str]] = None) -> Reply:
        """Send an :class:`Event` you built yourself (see :func:`make_event`), or a cloudevents
        SDK event (either major), encoded as pyfunc encodes a handler's SDK reply."""
        if mode == BINARY:
            wire_headers, body = codec.encode_binary(*_wire(event))
        elif mode == STRUCTURED:
            wire_headers, body = codec.encode_structured(*_wire(event))
        elif mode == BATCH:
            return self.batch([event], headers=headers)
        else:
            raise ValueError(f"mode must be 'binary', 'structured' or 'batch', not {mode!r}")
        return self.request("POST", "/", body=body, headers=[*wire_headers, *_items(headers)])

    def batch(self, events: Iterable[Union[Event, Mapping[str, Any], Any]],
              headers: Optional[Mapping[str, str]] = None) -> Reply:
        """Send several events as one batch; each is an :class:`Event` or a dict.

        A dict holds attributes plus an optional ``data``; missing ``id``, ``source``, ``type``
        and ``specversion`` get the same defaults as :func:`make_event`.
        """
        items = []
        for item in events:
            if isinstance(item, Event) or _is_sdk(item):  # (an SDK event may be a Mapping too)
                items.append(_wire(item))
                continue
            attributes = dict(item)
            data = attributes.pop("data", None)
            event = make_event(data, **attributes)
            items.append((event.attributes, event.data))
        wire_headers, body = codec.encode_batch(items)
        return self.request("POST", "/", body=body, headers=[*wire_headers, *_items(headers)])

    # ------------------------------------------------------------------ plain HTTP

    def get(self, path: str = "/", **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str = "/", **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)

    def request(
        self,
        method: str,
        path: str = "/",
        *,
        json: Any = None,
        body: Union[bytes, str, None] = None,
        headers: Union[Mapping[str, str], Iterable[tuple[str, str]], None] = None,
        query: Optional[Mapping[str, str]] = None,
    ) -> Reply:
        """Any HTTP request; ``json=`` sends a JSON body, ``body=`` raw bytes or text."""
        if self._closed:
            raise PyfuncError("this FunctionClient is closed")
        header_list = _items(headers)
        if json is not None:
            body = codec.dump_json(json)
            if not any(name.lower() == "content-type" for name, _ in header_list):
                header_list.append(("Content-Type", "application/json"))
        if isinstance(body, str):
            body = body.encode("utf-8")
        response = self._client.open(path, method=method, data=body or b"", headers=header_list,
                                     query_string=query)
        try:
            return decode_reply(response.status_code, list(response.headers.items()), response.get_data())
        finally:
            response.close()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Run the ``stop()`` hook and release what the app holds; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        from ._server import run_stop_hook

        try:
            run_stop_hook(self.app.loaded)
        finally:
            try:
                self.app.close()
            finally:
                self._restore_env()

    def __enter__(self) -> FunctionClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def decode_reply(status: int, headers: list[tuple[str, str]], body: bytes) -> Reply:
    """Turn a raw HTTP response into a :class:`Reply` (also used by ``pyfunc invoke``)."""
    header_map = {name.lower(): value for name, value in headers}
    reply = Reply(status, header_map, body)
    content_type = header_map.get("content-type")
    if status >= 300 and not any(name.startswith("ce-") for name in header_map):
        reply.data = _plain_data(body, content_type)
        return reply
    mode = codec.content_mode(content_type)
    if mode == BINARY and "ce-specversion" not in header_map:
        reply.data = _plain_data(body, content_type)
        return reply
    if mode == BINARY:
        environ = {"HTTP_" + name.upper().replace("-", "_"): value
                   for name, value in headers if name.lower().startswith("ce-")}
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        events = [codec.decode_binary(environ, body)]
    elif mode == STRUCTURED:
        events = [codec.decode_structured(body)]
    else:
        events = codec.decode_batch(body)
    reply.mode = mode
    reply.events = events
    if mode != BATCH:
        reply.event, reply.data = events[0].attributes, events[0].data
    return reply


def _to_cloudevent(event: Event, cls: Any = None) -> Any:
    """``event`` as the cloudevents SDK type ``cls`` (see :meth:`Reply.cloudevent`)."""
    from ._events import _default_event_class, converter_for_event_type

    convert = converter_for_event_type(cls if cls is not None else _default_event_class())
    if convert is None:
        raise TypeError(f"{cls!r} is not a CloudEvent type of the installed cloudevents SDK")
    return convert(event)


def _wire(event: Any) -> tuple[dict[str, Any], Any]:
    """``(attributes, data)`` to encode for an :class:`Event` or an SDK event of either major."""
    if not _is_sdk(event):
        return event.attributes, event.data  # an Event: as given
    from ._events import reply_from_sdk

    sdk = reply_from_sdk(event)
    if sdk is None:
        raise TypeError(f"{type(event).__module__}.{type(event).__name__} is not a CloudEvent")
    attributes, data = sdk
    # As pyfunc sends an SDK reply: unset optional attributes (None) are not attributes.
    return {name: value for name, value in attributes.items() if value is not None}, data


def _is_sdk(value: Any) -> bool:
    return type(value).__module__.startswith("cloudevents")


def _plain_data(body: bytes, content_type: Optional[str]) -> Any:
    if not body:
        return None
    if codec.is_json(content_type) and content_type:
        try:
            return jsonlib.loads(body)
        except ValueError:
            return body
    media = codec.media_type(content_type)
    if codec.is_text(content_type) or media in ("text/html", ""):
        return body.decode("utf-8", errors="replace")
    return body


def _items(headers: Union[Mapping[str, str], Iterable[tuple[str, str]], None]) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]
