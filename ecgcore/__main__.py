"""``python -m ecgcore ...``: the same CLI as the ``ecgcore`` command."""

import sys

from ecgcore.cli import main

if __name__ == "__main__":
    sys.exit(main())
