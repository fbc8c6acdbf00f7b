"""``python -m siridb``: the same entry point as the ``siridb`` console script."""
import sys

from siridb.cli import main

if __name__ == '__main__':
    sys.exit(main())
