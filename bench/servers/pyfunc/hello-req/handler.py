# HTTP mode, reading the request (cold start and idle RSS only): `req` is pyfunc's own request
# (flask.Request's API), so reading req.args imports neither Flask nor werkzeug; until 4374744 it
# was a flask.Request, and this function paid for importing Flask. The plain hello (../hello)
# never reads `req`.
def handler(req):
    return f"Hello, {req.args.get('name', 'World')}!"
