"""An HTTP function: pyfunc calls ``handler`` once per request to ``/``.

Parameters are bound by name: ``body`` is the request body (annotated ``dict``, it is parsed
as JSON and a bad body gets a 400), ``headers`` the request headers, ``req`` the
``flask.Request``. Return what a Flask view would: a dict (JSON), a string, or
``(body, status)``.
"""


def handler(body: dict):
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return {"error": "send a JSON object with a 'name'"}, 400
    return {"message": f"Hello, {name}!"}
