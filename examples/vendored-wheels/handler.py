"""A function whose dependency ships as a wheel in vendor/: the build installs it offline."""

import pyfunc_example_greeting


def handler(req):
    name = req.args.get("name", "world")
    return {"greeting": pyfunc_example_greeting.greet(name), "from": pyfunc_example_greeting.__file__}
