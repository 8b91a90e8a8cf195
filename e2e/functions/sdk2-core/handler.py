"""cloudevents 2.x types end to end: binds 2.x's CloudEvent, replies with one."""

import importlib.util
import os
import sys
from datetime import datetime
from importlib.metadata import distributions, version

import cloudevents
from cloudevents.core.v1.event import CloudEvent


def handler(event: CloudEvent) -> CloudEvent:
    return CloudEvent({"type": "com.example.sdk2", "source": "/sdk2", "sdkext": "two"}, {
        "sdk": version("cloudevents"),
        "got": event.get_data(),
        "time_is_datetime": isinstance(event.get_time(), datetime),
        # One SDK: the function's. No other sys.path entry has one (the runtime's 1.x is hidden),
        # nor does importlib.metadata know another, and 1.x's modules are not importable.
        "package_dirs": list(cloudevents.__path__),
        "copies": [p for p in sys.path if p and os.path.isdir(os.path.join(p, "cloudevents"))],
        "versions": [d.version for d in distributions() if d.metadata["Name"] == "cloudevents"],
        "has_1x_http": importlib.util.find_spec("cloudevents.http") is not None,
    })
