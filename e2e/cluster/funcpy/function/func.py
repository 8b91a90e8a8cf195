"""The function `pyfunc init --template http` makes (greet a JSON {"name"}), written for func-python
0.8.1 (the `func create -l python` http template's shape): the other side of the cluster's
scale-from-zero comparison."""

import json


def new():
    return Function()


class Function:
    async def handle(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            name = json.loads(body or b"{}").get("name")
        except (ValueError, AttributeError):
            name = None
        if not isinstance(name, str) or not name:
            status, reply = 400, {"error": "send a JSON object with a 'name'"}
        else:
            status, reply = 200, {"message": f"Hello, {name}!"}
        await send({"type": "http.response.start", "status": status,
                    "headers": [[b"content-type", b"application/json"]]})
        await send({"type": "http.response.body", "body": json.dumps(reply).encode()})
