"""pyfunc: run a plain Python function as a CloudEvents/HTTP function on Knative."""

__version__ = "0.2.0"
