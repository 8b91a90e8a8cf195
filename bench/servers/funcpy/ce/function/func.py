"""Knative func-python CloudEvent function (the cloudevents template's shape): the middleware
decodes the event into scope["event"]; we send a reply event with the data echoed, in the
request's mode (send.binary for binary requests; send() is structured)."""

from cloudevents.core.v1.event import CloudEvent


def new():
    return Function()


class Function:
    async def handle(self, scope, receive, send):
        request = scope["event"]
        attrs = {"type": "bench.reply", "source": "/bench", "id": "reply-" + request.get_id()}
        dct = request.get_datacontenttype()
        if dct:
            attrs["datacontenttype"] = dct
        response = CloudEvent(attributes=attrs, data=request.get_data())
        structured = False
        for k, v in scope["headers"]:
            if k == b"content-type":
                structured = v.startswith(b"application/cloudevents+json")
                break
        if structured:
            await send(response)
        else:
            await send.binary(response)
