"""``python -m growkit ...`` (and ``torchrun --nproc_per_node=N -m growkit train ...``): the ``growkit`` command."""

import sys

from growkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
