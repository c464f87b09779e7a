"""python -m geoservice"""

import sys

from geoservice.cli import main

sys.exit(main())
