"""The memory budget (pyfunc._memory): bodies in flight beyond PYFUNC_MAX_BODY_BYTES_IN_FLIGHT are
shed with a 503 and Retry-After, their bodies read and dropped (never kept), every request answered;
what is reserved is released when a request ends or its connection goes. Real servers, real sockets.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

SLOW_LENGTH = """
import time

def handler(body: bytes):
    time.sleep(1)
    return str(len(body))
"""


def _post_raw(port: int, size: int) -> tuple[int, dict[str, str], bytes]:
    """One POST of ``size`` bytes on its own connection, sent whole, then the answer read."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        sock.sendall(b"x" * size)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
                if len(body) >= int(headers.get("Content-Length", "0")):
                    return int(head[9:12]), headers, body
    raise AssertionError(f"no whole answer: {data[:200]!r}")


HELD = """
import pathlib, time, uuid
HERE = pathlib.Path(__file__).parent

def handler(body: bytes):
    (HERE / ("started-" + uuid.uuid4().hex)).write_text("")
    while not (HERE / "release").exists():
        time.sleep(0.01)
    return str(len(body))
"""


def test_bodies_over_the_budget_are_shed_with_503_and_all_are_answered(serve):
    """3 bodies of 1 MiB held in the handler fill a 3 MiB budget: 9 more are shed, every one of
    them, whatever the timing; then the 3 finish, and what they held is free again."""
    server = serve(HELD, env={"PYFUNC_MAX_BODY_BYTES_IN_FLIGHT": "3M", "PYFUNC_THREADS": "16"})
    answers: list[tuple[int, dict[str, str], bytes]] = []
    lock = threading.Lock()

    def one() -> None:
        answer = _post_raw(server.port, 1 << 20)
        with lock:
            answers.append(answer)

    held = [threading.Thread(target=one) for _ in range(3)]
    for client in held:
        client.start()
    deadline = time.monotonic() + 60
    while len(list(server.directory.glob("started-*"))) < 3:
        assert time.monotonic() < deadline, "the 3 first requests did not reach the handler"
        time.sleep(0.05)
    shed = [threading.Thread(target=one) for _ in range(9)]
    for client in shed:
        client.start()
    for client in shed:
        client.join(120)
    assert sorted(status for status, _, _ in answers) == [503] * 9
    for _, headers, body in answers:
        assert headers["Retry-After"] == "1"
        problem = json.loads(body)
        assert problem["status"] == 503 and "PYFUNC_MAX_BODY_BYTES_IN_FLIGHT" in problem["detail"], problem
    (server.directory / "release").write_text("")
    for client in held:
        client.join(120)
    assert [(status, body) for status, _, body in answers[9:]] == [(200, str(1 << 20).encode())] * 3
    # Everything reserved was released: 3 bodies fit again at once.
    again = [threading.Thread(target=one) for _ in range(3)]
    for client in again:
        client.start()
    for client in again:
        client.join(120)
    assert [status for status, _, _ in answers[12:]] == [200] * 3
    assert " 503 " in server.logs() or '"status": 503' in server.logs()  # the shed requests' access lines


ECHO_LENGTH = """
def handler(body: bytes):
    return str(len(body))
"""


@pytest.mark.parametrize("handler", [ECHO_LENGTH, "async " + ECHO_LENGTH.lstrip()], ids=["sync", "async"])
def test_the_next_body_sent_on_seeing_an_answer_is_admitted(serve, handler):
    """A budget of one body, and each body sent the moment the previous answer arrives (queue-proxy
    at containerConcurrency 1): none is shed. The reservation goes back when the answer starts, not
    when waitress closes the request after sending it, which a quick client outran."""
    server = serve(handler, env={"PYFUNC_MAX_BODY_BYTES_IN_FLIGHT": "1M"})
    answers = [_post_raw(server.port, 1 << 20)[0] for _ in range(40)]
    assert answers == [200] * 40


def test_a_body_larger_than_the_budget_is_served_alone(serve):
    server = serve(SLOW_LENGTH, env={"PYFUNC_MAX_BODY_BYTES_IN_FLIGHT": "1M"})
    status, _, body = _post_raw(server.port, 3 << 20)
    assert (status, body) == (200, str(3 << 20).encode())


def test_a_client_that_leaves_mid_body_releases_what_it_reserved(serve):
    server = serve(SLOW_LENGTH, env={"PYFUNC_MAX_BODY_BYTES_IN_FLIGHT": "2M"})
    for _ in range(5):  # each announced 2 MiB, sent a little, and left
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 20) + b"x" * 1000)
            time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:  # the server notices each close on its next read
        status, _, body = _post_raw(server.port, 2 << 20)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (status, body) == (200, str(2 << 20).encode())


def test_no_budget_by_default_without_a_memory_limit(serve):
    """Without a memory limit (this machine's test processes) auto is no budget: nothing shed."""
    from pyfunc._cgroup import read_limits

    if read_limits().memory:
        pytest.skip("this process has a cgroup memory limit: auto gives a budget here")
    server = serve(SLOW_LENGTH, env={"PYFUNC_THREADS": "16"})
    statuses = []

    def one() -> None:
        statuses.append(requests.post(server.url, data=b"x" * (1 << 20), timeout=60).status_code)

    clients = [threading.Thread(target=one) for _ in range(8)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(120)
    assert statuses == [200] * 8
