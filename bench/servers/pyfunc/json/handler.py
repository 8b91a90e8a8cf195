# HTTP mode, reading the request body as JSON and answering it (a dict is sent back as JSON).
def handler(req):
    return req.get_json()
