"""Turn pydantic validation errors into one-line, field-path-named messages."""
from __future__ import annotations

from pydantic import ValidationError


def describe(exc: ValidationError, limit: int = 10) -> str:
    """`a.b[2].c: reason; ...` for the first `limit` errors of a validation failure."""
    parts = []
    for err in exc.errors()[:limit]:
        path = ""
        for loc in err["loc"]:
            path += f"[{loc}]" if isinstance(loc, int) else (f".{loc}" if path else str(loc))
        parts.append(f"{path or '<root>'}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
