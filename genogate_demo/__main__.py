"""``python -m genogate_demo``: the same as the ``genogate-demo`` command."""

import sys

from genogate_demo.run import main

if __name__ == "__main__":
    sys.exit(main())
