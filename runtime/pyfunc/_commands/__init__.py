"""One module per ``pyfunc`` subcommand, each with ``register(subparsers)``."""
