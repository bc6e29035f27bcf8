"""``python -m rmail.client``: see rmail.client.startup."""

import sys

from rmail.client.startup import main

sys.exit(main())
