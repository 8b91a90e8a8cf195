"""The cluster e2e's event function, subscribed to a Broker through a Trigger. By event type:
e2e.hello -> a reply event (back into the Broker); e2e.drop -> pyfunc.Drop (dead-lettered at once);
e2e.retry -> pyfunc.Retry on the first delivery, a reply on the next; e2e.dedup -> a reply naming
the pod that ran it (a redelivery deduplicated through Redis gets that same reply from another pod).
"""

import os

import pyfunc

ATTEMPTS: dict = {}


def handler(data, attributes):
    kind, event_id = attributes["type"], attributes["id"]
    if kind == "e2e.drop":
        raise pyfunc.Drop(f"event {event_id} can never be processed")
    if kind == "e2e.retry":
        ATTEMPTS[event_id] = ATTEMPTS.get(event_id, 0) + 1
        if ATTEMPTS[event_id] < 2:
            raise pyfunc.Retry(f"event {event_id}: not yet")
        return {"type": "e2e.retried", "source": "/events"}, {"id": event_id, "attempts": ATTEMPTS[event_id]}
    if kind == "e2e.dedup":
        return {"type": "e2e.deduped", "source": "/events"}, {"id": event_id, "pod": os.environ.get("HOSTNAME")}
    return {"type": "e2e.reply", "source": "/events"}, {"id": event_id, "received": data}
