"""What a running service instance reports: messages, stderr lines and its exit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: "output": the service's stdout broke its framing limits (a message over `limits.message`);
#: "overflow": a subscriber of a background service fell too far behind, or sent more than
#: the restart queue holds, and was disconnected.
ErrorKind = Literal["trap", "timeout", "memory", "terminated", "start", "output", "overflow"]


@dataclass(frozen=True)
class ServiceError:
    """Why an instance ended abnormally; `message` is written for the app developer."""

    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class Message:
    """One message from the service's stdout, framed by its `ipc` mode (str in `lines` mode)."""

    data: bytes | str


@dataclass(frozen=True)
class Stderr:
    """One line the service wrote to stderr (without the newline)."""

    text: str


@dataclass(frozen=True)
class Exited:
    """The last event of every instance: its exit code, or the error that ended it."""

    code: int | None
    error: ServiceError | None = None
    #: (guest path, bytes) of each of the spawn's `outputs` the guest wrote, when it exited by
    #: itself (runtime/host/outputs.py)
    outputs: tuple[tuple[str, bytes], ...] = ()


Event = Message | Stderr | Exited


class ServiceLimitError(RuntimeError):
    """A spawn over a limit: the service's `limits.instances`, `[limits] instances`, or the
    subscribers of a background service."""
