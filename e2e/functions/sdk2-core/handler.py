"""cloudevents 2.x types end to end: binds 2.x's CloudEvent, replies with one."""

import importlib.util
from datetime import datetime
from importlib.metadata import version

import cloudevents
from cloudevents.core.v1.event import CloudEvent


def handler(event: CloudEvent) -> CloudEvent:
    return CloudEvent({"type": "com.example.sdk2", "source": "/sdk2", "sdkext": "two"}, {
        "sdk": version("cloudevents"),
        "got": event.get_data(),
        "time_is_datetime": isinstance(event.get_time(), datetime),
        # One SDK: the package's one directory is the function's, and 1.x's modules are not there.
        "package_dirs": list(cloudevents.__path__),
        "has_1x_http": importlib.util.find_spec("cloudevents.http") is not None,
    })
