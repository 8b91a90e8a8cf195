"""CloudEvent echo: replies with a com.example.reply event carrying the same data."""


def handler(data, attributes):
    return {"type": "com.example.reply", "source": "/echo"}, data
