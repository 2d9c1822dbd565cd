"""`python -m exporter` runs the CLI."""

import sys

from exporter.cli.main import main

sys.exit(main())
