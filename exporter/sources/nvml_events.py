"""NVML's XID critical-error events, waited for in one daemon thread and counted per GPU and MIG instance.

Each GPU is registered for `nvmlEventTypeXidCriticalError` on one event set when discovery first sees
it (`nvmlDeviceGetSupportedEventTypes`, then `nvmlDeviceRegisterEvents`); a GPU the driver refuses
(NotSupported, NoPermission, ...) keeps that reason, which the source reports as the field's support,
and every other read of the GPU goes on as before. One thread loops on `nvmlEventSetWait_v2` with a
short timeout, so it never holds the event loop or a sampling call and stops within one timeout on
close. Like the driver-call threads (driver_threads.py) it is a daemon: a wait stuck in the driver
cannot keep the process alive.

An event names its GPU by handle: the address is matched to the registered GPUs' handles (no NVML
call, so it works for a GPU that has just fallen off the bus), else `nvmlDeviceGetIndex` is asked. On
MIG, `gpuInstanceId` / `computeInstanceId` name the instance that raised it, 0xFFFFFFFF for neither.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from exporter.failurelog import FailureLog
from exporter.sources.xid import XidCounter, instance_ids

log = logging.getLogger(__name__)

NVML_ERROR_TIMEOUT = 10
WAIT_MS = 500  # one wait's timeout: how long close() may wait for the thread
ERROR_PAUSE_S = 1.0  # after a failed wait other than a timeout, so a broken set cannot spin a core
WAITING = "waiting for NVML's XID events"


def handle_address(handle: Any) -> int:
    """The address an NVML device handle points to: the same for every handle to one GPU."""
    return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)


class XidEvents:
    """Registers GPUs for XID events and counts each event into `counter` from its own thread."""

    def __init__(self, nvml: ModuleType, counter: XidCounter, wait_ms: int = WAIT_MS) -> None:
        self._nvml = nvml
        self._counter = counter
        self._wait_ms = wait_ms
        self._lock = threading.Lock()
        self._set: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._gpus: dict[int, int] = {}  # handle address -> GPU index, for every registered GPU
        self._refused: dict[int, str] = {}  # GPU index -> why it is not registered
        self._failures = FailureLog(log)  # touched by the event thread only

    def watch(self, index: int, handle: Any, reason_of: Callable[[int], str]) -> None:
        """Register one GPU for XID events (once); on refusal keep the reason, `reason_of(code)`, and go on.

        Called from the discovery thread of that GPU. A GPU refused for a transient reason is tried again
        at the next discovery.
        """
        nvml = self._nvml
        try:
            with self._lock:
                if self._stop.is_set() or index in self._gpus.values():
                    return
                if self._set is None:
                    self._set = nvml.nvmlEventSetCreate()
                event_set = self._set
            # Outside the lock: a call hung on this GPU must not hold the other GPUs' discovery.
            supported = int(nvml.nvmlDeviceGetSupportedEventTypes(handle))
            if supported & nvml.nvmlEventTypeXidCriticalError:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, event_set)
        except nvml.NVMLError as exc:
            with self._lock:
                self._refused[index] = reason_of(int(exc.value))
            log.warning("GPU %d: XID events unavailable (%s); its other values are read as before", index, exc)
            return
        with self._lock:
            if not supported & nvml.nvmlEventTypeXidCriticalError:
                self._refused[index] = "not_supported"
                return
            self._refused.pop(index, None)
            self._gpus[handle_address(handle)] = index
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, args=(event_set,), name="nvml-xid-events", daemon=True
                )
                self._thread.start()

    def reason(self, index: int) -> str | None:
        """None when the GPU is registered; else why its XIDs cannot be counted."""
        with self._lock:
            if index in self._gpus.values():
                return None
            return self._refused.get(index, "not_registered")

    def _run(self, event_set: Any) -> None:
        nvml = self._nvml
        while not self._stop.is_set():
            try:
                data = nvml.nvmlEventSetWait_v2(event_set, self._wait_ms)
            except nvml.NVMLError as exc:
                if int(exc.value) == NVML_ERROR_TIMEOUT:
                    self._failures.recovered(WAITING)
                else:
                    self._failures.failed(WAITING, f"failed: {exc}")
                    self._stop.wait(ERROR_PAUSE_S)
                continue
            self._failures.recovered(WAITING)
            if int(data.eventType) & nvml.nvmlEventTypeXidCriticalError:
                self._count(data)

    def _count(self, data: Any) -> None:
        index = self._gpus.get(handle_address(data.device))
        if index is None:
            try:
                index = int(self._nvml.nvmlDeviceGetIndex(data.device))
            except self._nvml.NVMLError as exc:
                log.warning("an XID %d event names a GPU NVML cannot identify (%s)", int(data.eventData), exc)
                return
        gi, ci = instance_ids(int(data.gpuInstanceId), int(data.computeInstanceId))
        self._counter.record(index, int(data.eventData), gi, ci)

    def close(self) -> bool:
        """Stop the thread and free the event set; False when the thread is stuck in a wait (the set is kept)."""
        with self._lock:
            self._stop.set()
            thread, event_set = self._thread, self._set
        if thread is not None:
            thread.join(self._wait_ms / 1000 + ERROR_PAUSE_S)
            if thread.is_alive():
                log.warning("the NVML event thread has not returned from its wait; leaving it to process exit")
                return False
        if event_set is not None:
            try:
                self._nvml.nvmlEventSetFree(event_set)
            except self._nvml.NVMLError as exc:
                log.debug("nvmlEventSetFree failed: %s", exc)
        return True
