"""``python -m pyfunc [DIR]``: serve DIR's handler (0.1.0's entry point, now with flags)."""

import sys

from .cli import main_module

if __name__ == "__main__":
    sys.exit(main_module())
