"""`python -m exporter` runs the CLI."""

import sys

try:
    from exporter.cli import entry_point
except KeyboardInterrupt:  # Ctrl-C while the package itself is still being imported
    sys.exit(130)

sys.exit(entry_point())
