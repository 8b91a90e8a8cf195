# The I/O scenario (bench/io.py): a sync handler that blocks 1 s, as on a blocking client library.
import time


def handler(req):
    time.sleep(1)
    return "done"
