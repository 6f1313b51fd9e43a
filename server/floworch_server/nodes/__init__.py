"""Node types. Importing this package registers every built-in spec."""

from . import control, http, testing, transform, triggers  # noqa: F401  (registration)
from .spec import ControlResult, NodeError, NodeSpec, Port, RetryDefaults, all_specs, get, register

__all__ = ["ControlResult", "NodeError", "NodeSpec", "Port", "RetryDefaults", "all_specs", "get", "register", "catalogue"]


def catalogue() -> list[dict]:
    return [spec.to_dict() for spec in all_specs()]
