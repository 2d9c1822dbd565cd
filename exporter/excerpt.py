"""Short, escaped excerpts of untrusted values for error messages and log lines.

A message that quotes what a user or a client sent must stay one short line whatever was sent: newlines,
control and format characters, lone surrogates and undecodable bytes come out escaped (as `repr` writes
them), long values are cut, and containers are described instead of printed (an alias-built YAML list
can be far larger printed than read).
"""

from __future__ import annotations

DEFAULT_LIMIT = 40


def excerpt(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """At most `limit` characters of `value`, quoted and escaped, with its full length when cut."""
    if isinstance(value, list | tuple | dict | set):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, int) and value.bit_length() > 128:  # str() refuses ints of over 4,300 digits
        return f"an integer of {value.bit_length() * 0.30103:,.0f} digits"
    if value is None or isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes | bytearray):
        length, text = len(value), bytes(value[:limit]).decode("latin-1")
    elif isinstance(value, str):
        length, text = len(value), value[:limit]
    else:
        return excerpt(repr(value), limit)
    quoted = repr(text)
    return f"{quoted}… ({length:,} characters)" if length > limit else quoted
