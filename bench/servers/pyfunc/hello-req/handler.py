# HTTP mode, reading the request (cold start and idle RSS only): Flask's request is built, so
# Flask is imported. The plain hello (../hello) never reads `req` and never imports Flask.
def handler(req):
    return f"Hello, {req.args.get('name', 'World')}!"
