"""``python -m gridbridge.cli``: the ``gridbridge`` console script."""

from gridbridge.cli import main

main()
