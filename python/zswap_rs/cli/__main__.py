"""`python -m zswap_rs.cli`: the same as the `zswap-rs` script."""

import sys

from .app import main

if __name__ == "__main__":  # not when a tool (stubtest) imports the module
    sys.exit(main())
