"""``python -m gridbridge.runtime --launch URL [--scratch DIR]``: run one attempt and exit
with its code (see :mod:`gridbridge.runtime` for the codes)."""

import sys

from gridbridge.runtime import main

sys.exit(main())
