"""Service glue as `func` writes it at build time: import the function's `new` and hand it to
func-python's HTTP middleware, which binds LISTEN_ADDRESS and serves it on Hypercorn."""

import logging
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from function import new  # noqa: E402

logging.basicConfig(level=logging.INFO)

if __name__ == "__main__":
    from func_python.http import serve

    serve(new)
