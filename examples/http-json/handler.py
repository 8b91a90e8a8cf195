"""Plain HTTP function: JSON in, JSON out.

`?sleep=SECONDS` delays the answer (at most 30 s), to watch graceful shutdown drain a request.
"""

import time


def handler(req):
    time.sleep(min(float(req.args.get("sleep", 0)), 30.0))
    body = req.get_json(silent=True) or {}
    return {"hello": body.get("name", "world"), "method": req.method}
