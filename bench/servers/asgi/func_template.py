"""func-python's own ASGI middleware around the func HTTP template function (bench/servers/funcpy/hello),
as an ASGI app for uvicorn and Hypercorn: the function served as func-python serves it, by another server."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "funcpy" / "hello"))

from func_python.http import ASGIApplication  # noqa: E402
from function import new  # noqa: E402

app = ASGIApplication(new())
