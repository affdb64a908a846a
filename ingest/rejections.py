"""Why an input was rejected: a stable kind (counted) and a detail (the offending value)."""

from __future__ import annotations


class Rejection(ValueError):
    """An input that cannot be used. `kind` is a fixed phrase for counting; `detail` names the value."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
