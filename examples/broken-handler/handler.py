"""A broken function: `pack build` must fail at the buildpack's handler check.

The import below names a module that does not exist, so loading the handler fails on line 6.
"""
import json
import no_such_module_here


def handler(data, attributes):
    return {"type": "com.example.reply", "source": "/broken"}, json.dumps(data)
