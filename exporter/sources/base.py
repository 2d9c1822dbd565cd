"""The source protocol every GPU backend implements, the errors it may raise, and what it says about itself."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from exporter.model import Gpu, GpuSample, Topology, XidErrors


class SourceUnavailableError(Exception):
    """The backend cannot be used at all (library or service missing); the CLI exits 2 with it."""


class GpuError(Exception):
    """Reading one GPU failed; the sampler counts it and keeps the other GPUs.

    `reason` is a short token for the `reason` label of `mig_exporter_errors_total`.
    """

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class TopologyChangedError(GpuError):
    """An instance the source knew no longer exists: the sampler runs discovery again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="not_found")


@runtime_checkable
class Source(Protocol):
    """A backend that discovers the node's MIG topology and samples it.

    Implementations keep their blocking library calls off the event loop. The sampler
    applies deadlines and isolates failures per GPU; a source only raises.
    """

    name: str

    async def discover(self) -> Topology:
        """Enumerate GPUs, GPU instances and compute instances."""
        ...

    async def sample(self, gpu: Gpu) -> GpuSample:
        """Read every supported field for one GPU and its instances."""
        ...

    async def close(self) -> None:
        """Release library handles and buffers."""
        ...


@runtime_checkable
class XidSource(Protocol):
    """A source that counts XID errors as the driver reports them, apart from sampling."""

    def xid_errors(self) -> XidErrors:
        """The counts so far; never blocks (the events are gathered in the background)."""
        ...


class Level(enum.Enum):
    """How a finding of `mig-exporter doctor` bears on running the exporter."""

    OK = "ok"
    INFO = "info"  # worth knowing; nothing to fix
    WARN = "warn"  # serve works, with series absent until fixed
    FAIL = "fail"  # serve cannot do its job with this source


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of `mig-exporter doctor`: what was checked, what was found, and the fix when there is one."""

    section: str  # NVML, DCGM, Kubernetes, ...
    subject: str  # library, GPU 0, host engine, ...
    level: Level
    message: str
    fix: str = ""


@runtime_checkable
class Describable(Protocol):
    """A source that can tell `mig-exporter doctor` about its library, service and GPUs (after a discovery)."""

    async def describe(self) -> list[Finding]:
        """Findings about the library, the service behind it and each GPU it discovered."""
        ...
