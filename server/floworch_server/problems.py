"""Validation problems: what is wrong, where (node, edge, field, line) and what to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    code: str  # stable machine-readable kind, e.g. "unknown-node-type"
    message: str  # what is wrong, in a sentence
    node: str | None = None  # the node id it concerns
    edge: str | None = None  # the edge id it concerns
    field: str | None = None  # dotted path inside the node/edge/document, e.g. "config.url"
    hint: str | None = None  # what to do about it
    line: int | None = None  # for problems found while parsing the file

    @property
    def location(self) -> str:
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.node is not None:
            parts.append(f"node '{self.node}'")
        if self.edge is not None:
            parts.append(f"edge '{self.edge}'")
        if self.field:
            parts.append(self.field)
        return ", ".join(parts) or "flow"

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None} | {"location": self.location}


class FlowInvalid(ValueError):
    """Raised when a flow with problems is asked to compile, publish or run."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}{len(self.problems)} problem(s) in the flow:\n{lines}")
