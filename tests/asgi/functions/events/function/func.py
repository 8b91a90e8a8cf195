"""func's CloudEvents template in substance (SDK 2.x): replies with an event, structured or binary."""

from cloudevents.core.v1.event import CloudEvent


def new():
    return Function()


class Function:
    async def handle(self, scope, receive, send):
        request = scope["event"]
        response = CloudEvent(
            attributes={"type": "function.response", "source": "function",
                        "id": f"response-{request.get_id() or 'unknown'}"},
            data={"message": "OK", "received": request.get_data(), "type": request.get_type()},
        )
        if scope["path"] == "/binary":
            await send.binary(response)
        else:
            await send(response)
