"""Knative Eventing's RequestReply: the reply to a request carrying the correlation attribute carries it back.

Tested against the attribute names of Eventing's RequestReply resource (eventing.knative.dev/v1alpha1,
Eventing 1.20+): ``spec.correlationAttribute`` defaults to ``correlationid`` and
``spec.replyAttribute`` to ``replyid`` (knative/eventing pkg/apis/eventing/v1alpha1/requestreply_defaults.go);
the resource takes as the reply the event whose ``replyid`` is the request's ``correlationid``,
``<original id>:<base64url of the AES-GCM-sealed id>``, unchanged
(pkg/requestreply/correlation_id.go). Not yet against a running RequestReply: the cluster's
pinned Eventing is not up in this session (tests/e2e note in docs/security.md).
"""

from __future__ import annotations

import base64
import json
import os

import pytest
import requests

from support import from_http, make_event, send

# A correlation id of the shape Eventing stamps: the original id, ':', base64url(nonce + sealed id).
CORRELATION = "req-42:" + base64.urlsafe_b64encode(os.urandom(12 + 6 + 16)).decode()

HANDLER = """
def handler(event):
    mode = (event.data or {}).get("mode")
    if mode == "intermediate":  # a step of a chain: not the reply RequestReply waits for
        return {"type": "com.example.step", "replyid": None}, {}
    if mode == "own":
        return {"type": "com.example.reply", "replyid": "chosen"}, {}
    if mode == "reuse-id":  # the reply reuses the request's source + id: pyfunc gives it a fresh id
        return {"type": "com.example.reply", "id": event["id"], "source": event["source"]}, {}
    if mode == "none":
        return None
    return {"type": "com.example.reply"}, {"ok": True}
"""


@pytest.fixture(scope="module")
def server(serve_module):
    return serve_module(HANDLER)


def _reply(response: requests.Response):
    assert response.status_code == 200, response.text
    return from_http(dict(response.headers), response.content)


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
def test_the_reply_carries_the_correlation_back_unchanged(server, structured):
    request = make_event({}, id="req-42", correlationid=CORRELATION)
    reply = _reply(send(server.url, request, structured=structured))
    assert reply["replyid"] == CORRELATION
    assert reply["correlationid"] == CORRELATION  # passed on, so a chain's last step can answer it
    assert reply["id"] != "req-42" and reply["type"] == "com.example.reply"


def test_the_reply_id_stays_fresh_even_when_the_handler_reuses_the_requests(server):
    reply = _reply(send(server.url, make_event({"mode": "reuse-id"}, id="req-42", correlationid=CORRELATION)))
    assert reply["id"] != "req-42" and reply["replyid"] == CORRELATION


def test_an_intermediate_step_opts_out_with_replyid_none(server):
    reply = _reply(send(server.url, make_event({"mode": "intermediate"}, correlationid=CORRELATION)))
    assert "replyid" not in reply.get_attributes()
    assert reply["correlationid"] == CORRELATION


def test_the_handlers_own_replyid_wins(server):
    reply = _reply(send(server.url, make_event({"mode": "own"}, correlationid=CORRELATION)))
    assert reply["replyid"] == "chosen"


def test_no_correlation_in_no_correlation_out(server):
    reply = _reply(send(server.url, make_event({})))
    attributes = reply.get_attributes()
    assert "replyid" not in attributes and "correlationid" not in attributes


def test_no_reply_is_still_no_reply(server):
    assert send(server.url, make_event({"mode": "none"}, correlationid=CORRELATION)).status_code == 202


def test_each_event_of_a_batch_answers_its_own_correlation(server):
    events = [
        {"specversion": "1.0", "id": "a", "source": "/t", "type": "t", "correlationid": "a:x", "data": {}},
        {"specversion": "1.0", "id": "b", "source": "/t", "type": "t", "correlationid": "b:y", "data": {}},
        {"specversion": "1.0", "id": "c", "source": "/t", "type": "t", "data": {}},
    ]
    response = requests.post(server.url, data=json.dumps(events), timeout=10,
                             headers={"Content-Type": "application/cloudevents-batch+json"})
    assert response.status_code == 200, response.text
    assert [reply.get("replyid") for reply in response.json()] == ["a:x", "b:y", None]
