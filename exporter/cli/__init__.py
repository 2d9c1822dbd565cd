"""The `mig-exporter` command line: `main` parses and dispatches to serve, plan, report, simulate-history, doctor."""
