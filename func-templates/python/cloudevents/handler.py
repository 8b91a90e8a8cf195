"""A CloudEvents function: pyfunc calls ``handler`` once per event it receives.

Parameters are bound by name: ``data`` is the event data (JSON → dict/list/str…),
``attributes`` the context attributes (``id``, ``source``, ``type``, extensions…). Return
``(attributes, data)`` to reply with an event, or ``None`` to accept it without a reply.
"""

import logging

logger = logging.getLogger(__name__)


def handler(data, attributes):
    logger.info("received %s from %s", attributes["type"], attributes["source"])
    reply = {"type": "com.example.reply", "source": "/function"}
    return reply, {"received": data}
