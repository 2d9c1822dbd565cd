"""The `mig-exporter` command line: `main` parses and dispatches to serve, plan, report, simulate-history,
doctor and healthcheck."""

from __future__ import annotations


def entry_point() -> int:
    """`mig-exporter`: main(), ended quietly by Ctrl-C (exit 130) even while its imports still run."""
    try:
        from exporter.cli.main import main  # inside the try: a Ctrl-C during these imports is no traceback

        return main()
    except KeyboardInterrupt:
        return 130
