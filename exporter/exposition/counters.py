"""dcgm-exporter's counters CSV (`--collectors FILE`): which `--names dcgm` families to serve.

The format of its etc/default-counters.csv: a `DCGM field, Prometheus type, help` record per line (CSV:
a help text with a comma is quoted), lines starting with `#` and blank lines skipped, spaces around
cells trimmed. The type is gauge or counter, or label for a field whose value becomes a label on every
series (DCGM_FI_DRIVER_VERSION). A field this exporter does not know is an error naming the file, line
and field; one it knows but does not read is served as absent, with the reason in
`mig_exporter_field_supported`.
"""

from __future__ import annotations

from pathlib import Path

from exporter.excerpt import excerpt
from exporter.exposition.dcgm import BY_NAME, LABELS, NOT_COLLECTED, Chosen, DcgmSelection

MAX_BYTES = 1 << 20  # dcgm-exporter's own files are a few KiB
TYPES = ("gauge", "counter", "label")
KNOWN = (*BY_NAME, *LABELS, *sorted(NOT_COLLECTED))


class CountersError(ValueError):
    """A counters file that cannot be used: the message names the file, the line and the field."""


def read_counters(path: str) -> DcgmSelection:
    """The selection a counters file makes; CountersError on a file that cannot be read or used."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CountersError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise CountersError(f"{path}: larger than {MAX_BYTES} bytes; a counters file lists a few dozen fields")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CountersError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_counters(text, path)


def parse_counters(text: str, origin: str) -> DcgmSelection:
    """The selection of a counters file's text; `origin` names it in errors."""
    import csv  # with --collectors only: a daemon without it does not carry the modules
    import difflib

    families: list[Chosen] = []
    labels: list[str] = []
    not_collected: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{origin}:{number}"
        try:
            record = [cell.strip() for cell in next(csv.reader([line], skipinitialspace=True))]
        except csv.Error as exc:
            raise CountersError(f"{where}: not a CSV record ({exc})") from None
        if len(record) != 3:
            raise CountersError(
                f"{where}: expected 3 fields (DCGM field, type, help), got {len(record)}: {excerpt(line.strip())}"
            )
        name, kind, help_text = record
        if name not in KNOWN:
            close = difflib.get_close_matches(name, KNOWN, 1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise CountersError(f"{where}: unknown field {excerpt(name)}: mig-exporter cannot serve it{hint}")
        if kind not in TYPES:
            raise CountersError(f"{where}: {name}: type {excerpt(kind)} is not one of {', '.join(TYPES)}")
        if name in seen:
            raise CountersError(f"{where}: {name} is listed twice (first on line {seen[name]})")
        seen[name] = number
        if name in LABELS:
            if kind != "label":
                raise CountersError(f"{where}: {name} is a label field: its type must be label, not {kind}")
            labels.append(name)
        elif kind == "label" and name in BY_NAME:
            raise CountersError(f"{where}: {name} is a metric, not a label: its type must be gauge or counter")
        elif name in BY_NAME:
            families.append(Chosen(BY_NAME[name], kind, help_text or BY_NAME[name].help))
        else:
            not_collected.append(name)
    return DcgmSelection(tuple(families), tuple(labels), tuple(not_collected))
