"""A CloudEvent function with a dependency from requirements.txt (installed by the buildpack)."""

import humanize


def handler(data, attributes):
    size = int(data["bytes"])
    reply = {"bytes": size, "human": humanize.naturalsize(size)}
    return {"type": "com.example.size", "source": "/size"}, reply
