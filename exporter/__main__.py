"""`python -m exporter` runs the CLI."""

import sys

from exporter.cli import entry_point

sys.exit(entry_point())
