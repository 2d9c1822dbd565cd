"""XID codes that mean a GPU or a MIG slice needs attention, with what each means and what to do.

The shipped alert (`MigGpuXidError`, one rule per code here) and README's runbook read this table.
Meanings follow NVIDIA's XID catalogue (docs.nvidia.com/deploy/xid-errors); other XIDs are counted
(`mig_gpu_xid_errors_total`) but do not alert: most (13, 31, 43, 45, ...) are faults of the
application that ran on the slice, not of the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AttentionXid:
    """An XID that needs someone to act: its meaning, the alert's severity and the runbook line."""

    xid: int
    meaning: str
    severity: str  # "critical": the GPU or slice is unusable until acted on; "warning": act at the next drain
    action: str


ATTENTION_XIDS: tuple[AttentionXid, ...] = (
    AttentionXid(
        48,
        "double-bit ECC error (uncorrectable memory error)",
        "critical",
        "drain the GPU's jobs and reset it (`nvidia-smi -r -i <gpu>`); if it recurs, the board needs replacing",
    ),
    AttentionXid(
        63,
        "a memory row was remapped (or a page retired) after an ECC error",
        "warning",
        "reset the GPU at the next drain so the remapping takes effect; check `nvidia-smi -q -d ROW_REMAPPER`",
    ),
    AttentionXid(
        64,
        "remapping a memory row (or retiring a page) failed",
        "critical",
        "the memory can no longer be repaired in place: drain the GPU and have the board replaced",
    ),
    AttentionXid(
        74,
        "NVLink error",
        "warning",
        "check the links (`nvidia-smi nvlink -s -i <gpu>`, `nvidia-smi nvlink -e`); reset the GPU; "
        "if errors recur, have the NVLink or the board serviced",
    ),
    AttentionXid(
        79,
        "the GPU has fallen off the bus",
        "critical",
        "the GPU no longer answers on PCIe: drain the node and reboot it; look for power, thermal or PCIe "
        "errors in `dmesg`; if it recurs, have the board replaced",
    ),
    AttentionXid(
        94,
        "contained ECC error: an uncorrectable memory error was confined to the applications on the slice",
        "warning",
        "restart the jobs on the affected slice (gi/ci); the rest of the GPU goes on; reset the GPU at the next drain",
    ),
    AttentionXid(
        95,
        "uncontained ECC error: an uncorrectable memory error may have reached every application on the GPU",
        "critical",
        "drain every slice of the GPU and reset it (`nvidia-smi -r -i <gpu>`) before running jobs on it again",
    ),
)

# How long an XID keeps its alert firing: the alert looks for new XIDs in this window.
XID_ALERT_WINDOW = "10m"
