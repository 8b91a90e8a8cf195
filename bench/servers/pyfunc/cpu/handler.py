"""The workers scenario (bench/workers_bench.py): about 2 ms of pure Python per request."""


def handler():
    total = 0
    for i in range(15000):
        total += i * i
    return "ok"
