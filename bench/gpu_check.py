"""A first look at mig-exporter on a real GPU node: doctor, the hardware tests, and `serve` under a load.

    bench/gpu_check.sh OUT_DIR        (or: PYTHONPATH=$PWD python3 bench/gpu_check.py OUT_DIR)

Made for a bare GPU machine image: Python with aiohttp, prometheus-client, PyYAML, nvidia-ml-py,
grpcio, protobuf, pytest, hypothesis and torch, no network, the checkout on PYTHONPATH and nothing
pip-installed; no Prometheus. It only reads the GPUs: it never changes MIG mode or instances, never
resets a GPU; the only load is tests/hardware/workload.py (a matmul loop, about ten seconds).

Steps, each under its own time limit (about four and a half minutes in all at most):

1. environment.txt: Python, the packages, `nvidia-smi -L` and a `--query-gpu` line per GPU;
2. doctor.txt and doctor.json: `mig-exporter doctor` (source auto);
3. hardware.txt and hardware.xml: `pytest -m gpu tests/hardware`;
4. serve.log, scrapes/, activity.csv: `serve --source nvml` for GPU_CHECK_SERVE_SECONDS (30) seconds,
   scraped every second, with the workload running on GPU 0 (or its first MIG device) in the middle
   third; the graphics-engine activity of that device is expected under 0.05 before and over 0.8 during;
5. summary.json and summary.txt, printed at the end.

Exit status: 0 when every check passed, 1 when one failed, 3 when NVML finds no GPU (the steps still
run and say so).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hardware.workload import Workload  # noqa: E402
from tests.support.bare_image import BARE_IMAGE_PACKAGES  # noqa: E402

BUDGET_S = 285.0  # the whole check stays under five minutes
DOCTOR_TIMEOUT_S = 40.0
HARDWARE_TIMEOUT_S = 130.0
SERVE_START_TIMEOUT_S = 30.0
SERVE_STOP_S = 20.0
WORKLOAD_READY_S = 60.0  # importing torch and creating a CUDA context
IDLE_BELOW = 0.05
BUSY_ABOVE = 0.8
EXIT_NO_GPU = 3


@dataclass
class Check:
    """One line of the summary."""

    name: str
    ok: bool | None  # None: not run (with the reason in `detail`)
    detail: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        return f"{mark}  {self.name}: {self.detail}"


@dataclass
class Run:
    out: Path
    env: dict[str, str]
    serve_seconds: float
    started: float = field(default_factory=time.monotonic)
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def limit(self, wanted: float, reserve: float = 0.0) -> float:
        """At most `wanted` seconds, leaving `reserve` for the steps after this one within the budget."""
        left = BUDGET_S - (time.monotonic() - self.started) - reserve
        return max(5.0, min(wanted, left))

    def serve_needs(self) -> float:
        return SERVE_START_TIMEOUT_S + self.serve_seconds + SERVE_STOP_S

    def python(self, *args: str, timeout: float, log: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `python args` from the checkout; a run past `timeout` comes back with exit code 124."""
        try:
            result = subprocess.run(
                [sys.executable, *args],
                check=False,
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            result = subprocess.CompletedProcess(exc.cmd, 124, _text(exc.stdout), _text(exc.stderr) + "\n(timed out)")
        if log:
            (self.out / log).write_text(result.stdout + ("\n--- stderr ---\n" + result.stderr if result.stderr else ""))
        return result


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: bench/gpu_check.sh OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), path) if p)}
    run = Run(out, env, float(os.environ.get("GPU_CHECK_SERVE_SECONDS", "30")))
    gpus = environment(run)
    doctor(run)
    hardware(run)
    serve(run)
    run.facts["seconds"] = round(time.monotonic() - run.started, 1)
    return summary(run, gpus)


def environment(run: Run) -> int:
    """Record the machine; return how many GPUs NVML finds (0 with the reason noted)."""
    lines = [f"python {sys.version.split()[0]} on {platform.platform()}", f"checkout {ROOT}"]
    for name in BARE_IMAGE_PACKAGES:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    smi = shutil.which("nvidia-smi")
    if smi:
        for args in (
            ["-L"],
            ["--query-gpu=index,name,uuid,driver_version,mig.mode.current,memory.total", "--format=csv,noheader"],
        ):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                result = subprocess.run([smi, *args], check=False, capture_output=True, text=True, timeout=15)
                lines += [f"$ nvidia-smi {' '.join(args)}", result.stdout.strip() or result.stderr.strip()]
    else:
        lines.append("nvidia-smi not found")
    probe = run.python("-c", _NVML_PROBE, timeout=20)
    lines.append(f"NVML: {probe.stdout.strip() or probe.stderr.strip()[-500:]}")
    (run.out / "environment.txt").write_text("\n".join(lines) + "\n")
    found = re.match(r"(\d+) GPU", probe.stdout.strip())
    count = int(found.group(1)) if found else 0
    run.facts["nvml"] = probe.stdout.strip() or probe.stderr.strip().splitlines()[-1:]
    run.facts["gpus"] = count
    run.checks.append(Check("NVML", count > 0 or None, probe.stdout.strip() or "nvidia-ml-py cannot run"))
    return count


_NVML_PROBE = """
import pynvml
try:
    pynvml.nvmlInit()
except pynvml.NVMLError as exc:
    print(f"no GPU: nvmlInit failed: {exc}")
    raise SystemExit(0)
count = pynvml.nvmlDeviceGetCount()
names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
print(f"{count} GPU(s), driver {pynvml.nvmlSystemGetDriverVersion()}: {names}")
"""


def doctor(run: Run) -> None:
    later = 60.0 + run.serve_needs()
    text = run.python("-m", "exporter", "doctor", timeout=run.limit(DOCTOR_TIMEOUT_S, later), log="doctor.txt")
    as_json = run.python("-m", "exporter", "doctor", "--output", "json", timeout=run.limit(DOCTOR_TIMEOUT_S, later))
    (run.out / "doctor.json").write_text(as_json.stdout)
    verdict = next((line for line in text.stdout.splitlines() if line.startswith("result:")), "")
    run.facts["doctor_exit"] = text.returncode
    with contextlib.suppress(json.JSONDecodeError):
        doc = json.loads(as_json.stdout)
        run.facts["doctor_source"] = doc["source"]["chosen"]
        run.facts["doctor_problems"] = [c for c in doc["checks"] if c["level"] in ("warn", "fail")]
    detail = verdict or f"exit {text.returncode}: {(text.stderr or text.stdout).strip()[-300:]}"
    ok: bool | None = text.returncode == 0
    if not ok and not run.facts["gpus"]:
        ok, detail = None, f"{detail} (as expected without a GPU)"
    run.checks.append(Check("doctor", ok, detail))


def hardware(run: Run) -> None:
    args = ["-m", "pytest", "-m", "gpu", "tests/hardware", "-q", "-rA", "-p", "no:cacheprovider"]
    timeout = run.limit(HARDWARE_TIMEOUT_S, run.serve_needs())
    result = run.python(*args, f"--junitxml={run.out / 'hardware.xml'}", timeout=timeout, log="hardware.txt")
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    run.facts["hardware"] = counts
    ok: bool | None = result.returncode == 0 if counts.get("passed") or counts.get("failed") else None
    run.checks.append(Check("hardware tests", ok, last.strip("= ")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except OSError as exc:
        return getattr(exc, "code", 0) or 0, str(exc)


def serve(run: Run) -> None:
    """`serve --source nvml`, scraped every second, with the workload in the middle third."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scrapes = run.out / "scrapes"
    scrapes.mkdir(exist_ok=True)
    args = [
        "-m",
        "exporter",
        "serve",
        "--source",
        "nvml",
        "--listen",
        f"127.0.0.1:{port}",
        "--interval",
        "1",
        "--kubelet-socket",
        "",
        "--log-level",
        "info",
    ]
    with open(run.out / "serve.log", "w") as log:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=run.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready_by = time.monotonic() + run.limit(SERVE_START_TIMEOUT_S, run.serve_seconds + SERVE_STOP_S)
        while time.monotonic() < ready_by and proc.poll() is None and fetch(base + "/readyz", 1.0)[0] != 200:
            time.sleep(0.3)
        if proc.poll() is not None or fetch(base + "/readyz", 1.0)[0] != 200:
            tail = (run.out / "serve.log").read_text()[-400:].strip()
            ok = False if run.facts["gpus"] else None
            run.checks.append(Check("serve --source nvml", ok, f"did not start: {tail}"))
            return
        scrape_loop(run, base, scrapes)
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(timeout=5)
        run.facts["serve_exit"] = code


def scrape_loop(run: Run, base: str, scrapes: Path) -> None:
    """Scrape every second; a third of the way in start the load, two thirds in stop it."""
    seconds = run.serve_seconds
    status, body = fetch(base + "/metrics")
    (scrapes / "000.prom").write_text(body)
    device = _load_target(body)
    run.facts["load_target"] = device
    workload = _start_workload(run, device)
    rows: list[tuple[float, str, float | None]] = []
    failures, phase, n = 0, "before", 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        elapsed = time.monotonic() - t0
        if workload is not None and phase == "before" and elapsed >= seconds / 3:
            phase = _go(run, workload)
        if workload is not None and phase == "load" and elapsed >= 2 * seconds / 3:
            workload.stop()
            phase = "after"
        n += 1
        status, body = fetch(base + "/metrics")
        if status != 200:
            failures += 1
        else:
            (scrapes / f"{n:03d}.prom").write_text(body)
        rows.append((round(elapsed, 2), phase, _activity(body, device) if status == 200 else None))
        time.sleep(max(0.0, n - (time.monotonic() - t0)))
    if workload is not None:
        workload.stop()
    (run.out / "activity.csv").write_text(
        "seconds,phase,gr_engine_active\n" + "".join(f"{t},{p},{'' if v is None else v}\n" for t, p, v in rows)
    )
    unparsable = _parse_all(scrapes)
    run.facts["scrapes"] = {"count": n, "failed": failures, "unparsable": unparsable}
    up = _value(body, "mig_exporter_source_up") if status == 200 else None
    ok = failures == 0 and not unparsable and up == 1.0
    detail = f"{n} scrapes, {failures} failed, {len(unparsable)} unparsable, source_up {up}"
    run.checks.append(Check("serve --source nvml", ok, detail))
    _judge_activity(run, rows, loaded=any(p == "load" for _, p, _ in rows))


def _judge_activity(run: Run, rows: list[tuple[float, str, float | None]], loaded: bool) -> None:
    before = [v for _, p, v in rows if p == "before" and v is not None]
    during = [v for t, p, v in rows if p == "load" and v is not None]
    run.facts["activity"] = {"before_max": max(before, default=None), "load_max": max(during, default=None)}
    if not loaded:
        reason = run.facts.get("workload", "no workload")
        run.checks.append(Check("activity under load", None, f"not measured: {reason}"))
        return
    if not before and not during:
        run.checks.append(Check("activity under load", None, "no gr_engine_active series (no GPM on this GPU?)"))
        return
    ok = bool(during) and max(during) > BUSY_ABOVE and (not before or min(before) < IDLE_BELOW)
    detail = (
        f"before load max {max(before, default=float('nan')):.3f} (expect < {IDLE_BELOW}), "
        f"under load max {max(during, default=float('nan')):.3f} (expect > {BUSY_ABOVE})"
    )
    run.checks.append(Check("activity under load", ok, detail))


_SERIES = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.M)


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def _load_target(metrics: str) -> dict[str, str]:
    """GPU 0's first MIG device when MIG is on, else GPU 0 itself, from the first scrape."""
    for name, labels, _ in _SERIES.findall(metrics):
        if name == "mig_compute_instance_info" and _labels(labels).get("gpu") == "0":
            found = _labels(labels)
            return {
                "visible": found["mig_uuid"],
                "series": "mig_compute_instance_gr_engine_active_ratio",
                "gpu": "0",
                "gi": found["gi"],
                "ci": found["ci"],
            }
    for name, labels, _ in _SERIES.findall(metrics):
        if name == "mig_gpu_info" and _labels(labels).get("gpu") == "0":
            return {"visible": _labels(labels)["uuid"], "series": "mig_gpu_gr_engine_active_ratio", "gpu": "0"}
    return {}


def _activity(metrics: str, device: dict[str, str]) -> float | None:
    for name, labels, value in _SERIES.findall(metrics):
        if name != device.get("series"):
            continue
        found = _labels(labels)
        if all(found.get(k) == device[k] for k in ("gpu", "gi", "ci") if k in device):
            return float(value)
    return None


def _value(metrics: str, name: str) -> float | None:
    found = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else None


def _parse_all(scrapes: Path) -> list[str]:
    """Names of scrapes prometheus-client's parser refuses."""
    from prometheus_client.parser import text_string_to_metric_families

    bad = []
    for path in sorted(scrapes.glob("*.prom")):
        try:
            list(text_string_to_metric_families(path.read_text()))
        except ValueError:
            bad.append(path.name)
    return bad


def _start_workload(run: Run, device: dict[str, str]) -> Workload | None:
    """The matmul workload on the target device, started now so that torch loads while serve warms up."""
    if not device:
        run.facts["workload"] = "no GPU 0 in the exposition"
        return None
    workload = Workload(device["visible"], "--matmul", "--seconds", "120", env=run.env)
    run.facts["workload"] = f"matmul loop on {device['visible']}"
    return workload


def _go(run: Run, workload: Workload) -> str:
    """Start the load; the phase it leaves the check in."""
    if not workload.wait_for("ready", run.limit(WORKLOAD_READY_S, run.serve_seconds + SERVE_STOP_S)):
        run.facts["workload"] = f"did not start: {workload.seen[-3:] or 'no output'}"
        workload.stop()
        return "no load"
    workload.send("go")
    if not workload.wait_for("running", 30.0):
        run.facts["workload"] = f"did not run: {workload.seen[-3:]}"
        workload.stop()
        return "no load"
    return "load"


def summary(run: Run, gpus: int) -> int:
    failed = [c for c in run.checks if c.ok is False]
    status = EXIT_NO_GPU if gpus == 0 else 1 if failed else 0
    head = "no NVIDIA GPU visible to NVML" if gpus == 0 else f"{gpus} GPU(s)"
    lines = [f"gpu_check: {head}; {len(failed)} check(s) failed; {run.facts['seconds']}s; files in {run.out}"]
    lines += [c.line() for c in run.checks]
    problems = run.facts.get("doctor_problems") or []
    lines += [f"      doctor {p['level']}: {p['subject']}: {p['message']}" for p in problems[:12]]
    text = "\n".join(lines) + "\n"
    (run.out / "summary.txt").write_text(text)
    doc = {"exit_code": status, "checks": [c.__dict__ for c in run.checks], "facts": run.facts}
    (run.out / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
    print(text, end="")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
