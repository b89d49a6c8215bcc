"""``python -m ntk_influence.cli``: the ``ntk-influence`` command line."""

import sys

from . import main

sys.exit(main())
