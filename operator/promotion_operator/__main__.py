"""`python -m promotion_operator` is the `promotion-operator` command."""

import sys

from promotion_operator.cli import main

sys.exit(main())
