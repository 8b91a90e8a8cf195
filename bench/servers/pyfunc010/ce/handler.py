# CloudEvent mode (binds `data` and `attributes`): reply with a new event, data echoed.
def handler(data, attributes):
    return {"type": "bench.reply", "source": "/bench"}, data
