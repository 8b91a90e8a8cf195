# HTTP mode (binds `req` only): plain GET hello.
def handler(req):
    return "Hello, World!"
