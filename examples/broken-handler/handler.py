"""A broken function: `pack build` must fail at the buildpack's handler check.

Line 6 imports a module that does not exist, so loading the handler fails right there.
"""

import no_such_module_here  # noqa: F401


def handler(data, attributes):
    return {"type": "com.example.reply", "source": "/broken"}, data
