# HTTP mode, reading the request: the query string's name (GET /?name=bench). Throughput
# scenario "query", and the cold start and idle RSS of a function that reads `req`.
def handler(req):
    return f"Hello, {req.args.get('name', 'World')}!"
