"""Node types. Importing this package registers every built-in spec: each module of this
package (but spec and docs) defines and registers its node types, so adding a node type is
adding one module here."""

from __future__ import annotations

import importlib
import pkgutil

from .spec import (
    ControlResult,
    NodeError,
    NodeSpec,
    OutputsFrom,
    Port,
    RetryDefaults,
    all_specs,
    get,
    register,
    require,
)

__all__ = [
    "ControlResult",
    "NodeError",
    "NodeSpec",
    "OutputsFrom",
    "Port",
    "RetryDefaults",
    "all_specs",
    "catalogue",
    "get",
    "register",
    "require",
]

_NOT_SPECS = {"spec", "docs"}

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _NOT_SPECS and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")


def catalogue() -> list[dict]:
    return [spec.to_dict() for spec in all_specs()]
