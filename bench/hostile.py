"""What breaks under hostile input: the attacks of issue 17, each run against two source trees side by side.

    PYTHONPATH=$PWD python bench/hostile.py --before PATH [--after PATH]

Each attack starts `python -m exporter` from the tree (its own code, through PYTHONPATH and the working
directory) on loopback and reports what a user would see: statuses, latencies, exit codes, log volume,
peak memory. Children that could eat the machine run under a 1.5 GiB address-space limit (a MemoryError
then is the outcome). The result is a markdown table, before and after, in bench/results/hostile.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support.flood import FloodProcess, basic, rss_mb, scrape_every, seconds_until_let_in  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.tls import Pki, bcrypt_hash  # noqa: E402

MEMORY_LIMIT = 3 << 29  # 1.5 GiB of address space for children that might take gigabytes
SECRET = basic("prometheus", "secret")


def limited(open_files: int | None = None, memory: bool = True) -> Callable[[], None]:
    def apply() -> None:
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    return apply


@dataclass
class Run:
    code: int
    seconds: float
    stderr: str
    peak_mb: float

    def outcome(self) -> str:
        lines = self.stderr.strip().splitlines()
        last = lines[-1] if lines else ""
        kind = "traceback" if "Traceback" in self.stderr else f"{len(lines)} line{'s' if len(lines) != 1 else ''}"
        what = last.split(":")[0] if "Traceback" in self.stderr else ""
        return f"exit {self.code}, {kind}{' ' + what if what else ''}, {self.seconds:.1f} s, {self.peak_mb:.0f} MB"


class Tree:
    """A source tree whose exporter the attacks run."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch
        self.env = {**os.environ, "PYTHONPATH": str(root)}

    def run(self, *args: str, timeout: float = 60, memory: bool = True) -> Run:
        """Run the CLI to its end (killed after `timeout`); its exit code, time, stderr and peak RSS."""
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=limited(memory=memory),  # noqa: PLW1509 - only setrlimit
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        return Run(proc.returncode, time.monotonic() - started, err.decode(errors="replace"), usage.ru_maxrss / 1024)

    def serve(self, *args: str, open_files: int | None = None, memory: bool = False, tls: Pki | None = None) -> Server:
        return Server(self, list(args), open_files, memory, tls)


class Server:
    """`serve` from a tree, on a free loopback port, until stop()."""

    def __init__(self, tree: Tree, args: list[str], open_files: int | None, memory: bool, tls: Pki | None) -> None:
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.context = None
        if tls is not None:
            import ssl

            self.context = ssl.create_default_context(cafile=str(tls.ca.cert))
        self.log_path = tree.scratch / f"serve-{self.port}.log"
        command = [sys.executable, "-m", "exporter", "serve", "--listen", f"127.0.0.1:{self.port}", *args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=tree.root,
                env=tree.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limited(open_files, memory),  # noqa: PLW1509 - only setrlimit
            )
        deadline = time.monotonic() + 30
        while self.get("/healthz")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve {args} did not start: {self.log()[-500:]}")
            time.sleep(0.1)

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, float]:
        """(status, seconds); status 0 when the connection failed."""
        started = time.perf_counter()
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
                response.read()
                return response.status, time.perf_counter() - started
        except urllib.error.HTTPError as exc:
            return exc.code, time.perf_counter() - started
        except OSError:
            return 0, time.perf_counter() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> tuple[int | None, float]:
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode, time.monotonic() - started


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def users_config(folder: Path, cost: int = 10, name: str = "web.yml") -> Path:
    return write(
        folder,
        name,
        f"basic_auth_users:\n  prometheus: {bcrypt_hash('secret', cost)}\n  backup: {bcrypt_hash('other', cost)}\n",
    )


def alias_bomb(levels: int, under: str) -> str:
    """`under` with BOMB replaced by one flow list whose last item expands to 9**levels values."""
    lists = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    lists += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return under.replace("BOMB", "[" + ", ".join(lists) + "]")


# --- the attacks ----------------------------------------------------------------------------------------


def reload_to_empty(tree: Tree) -> str:
    config = users_config(tree.scratch, name="reload.yml")
    server = tree.serve("--source", "synthetic", "--web-config", str(config))
    try:
        config.write_text("")
        time.sleep(1.5)
        server.get("/metrics")
        time.sleep(1.5)
        return f"/metrics without credentials after the file emptied: {server.get('/metrics')[0]}"
    finally:
        server.stop()


async def _flood(server: Server, clients: int, seconds: float, ca: Path | None) -> tuple[str, float, float]:
    url = server.url + "/metrics"
    await seconds_until_let_in(url, SECRET, 20, server.context)
    stop = asyncio.Event()
    before = peak = rss_mb(server.pid)
    flood = FloodProcess(url, clients, "prometheus", ca)
    scraper = asyncio.create_task(scrape_every(url, SECRET, 0.05, stop, server.context))
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        await asyncio.sleep(0.2)
        peak = max(peak, rss_mb(server.pid))
    flood.stop()
    stop.set()
    scrapes = await scraper
    recovery = await seconds_until_let_in(url, basic("backup", "other"), 60, server.context)
    worst = max(scrapes.latencies, default=float("nan"))
    summary = (
        f"scrape p99 {scrapes.p99() * 1000:.0f} ms, worst {worst:.2f} s, {len(scrapes.failures)} failed; "
        f"RSS {before:.0f} -> {peak:.0f} MB; a new login "
        + (f"let in {recovery:.1f} s after" if recovery != float("inf") else "refused for over 60 s after")
    )
    return summary, peak - before, recovery


def password_flood(tree: Tree) -> str:
    server = tree.serve(
        "--source", "synthetic", "--scenario", "dgx-h100", "--web-config", str(users_config(tree.scratch))
    )
    try:
        return asyncio.run(_flood(server, 48, 20, None))[0]
    finally:
        server.stop()


def tls_flood(tree: Tree) -> str:
    pki = Pki(tree.scratch / "pki")
    pki.issue("server", "127.0.0.1", server=True)
    config = users_config(pki.folder)
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + config.read_text())
    server = tree.serve("--source", "synthetic", "--scenario", "dgx-h100", "--web-config", str(config), tls=pki)
    try:
        return asyncio.run(_flood(server, 1000, 30, pki.ca.cert))[0]
    finally:
        server.stop()


def user_timing(tree: Tree) -> str:
    server = tree.serve("--source", "synthetic", "--web-config", str(users_config(tree.scratch, 12, "cost12.yml")))
    try:
        wrong, unknown = [], []
        for i in range(7):
            wrong.append(server.get("/metrics", basic("prometheus", f"guess-{i}"))[1])
            unknown.append(server.get("/metrics", basic(f"nobody-{i}", f"guess-{i}"))[1])
        a, b = statistics.median(wrong), statistics.median(unknown)
        return f"wrong password {a * 1000:.0f} ms, unknown user {b * 1000:.0f} ms ({abs(a - b) / max(a, b):.0%} apart)"
    finally:
        server.stop()


MALFORMED = [
    b"GET /" + b"A" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"B" * 8000 + b"\r\n\r\n",
    b"\x00\x01 " + b"C" * 8000 + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 4000 + b"\r\n\r\n",
]


def bad_request_logs(tree: Tree, level: str) -> str:
    server = tree.serve("--source", "synthetic", "--log-level", level)
    try:
        start = len(server.log())
        for i in range(1000):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(MALFORMED[i % len(MALFORMED)])
                with contextlib.suppress(OSError):
                    sock.recv(100)
        time.sleep(0.5)
        logged = server.log()[start:]
        return f"{len(logged):,} bytes, {len(logged.splitlines()):,} lines, {logged.count('Traceback')} tracebacks"
    finally:
        server.stop()


def silent_crowd(tree: Tree) -> str:
    server = tree.serve("--source", "synthetic", open_files=1024)
    crowd = []
    try:
        start = len(server.log())
        for _ in range(1100):
            try:
                crowd.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
            except OSError:
                break
        ok = sum(server.get("/metrics", timeout=3)[0] == 200 for _ in range(10))
        time.sleep(1)
        logged = server.log()[start:]
        accept = logged.count("out of system resource")
        return (
            f"{len(crowd)} connected; {ok}/10 scrapes answered; {len(logged.splitlines()):,} log lines "
            f"({len(logged) / 1e6:.1f} MB), {accept:,} accept() errors"
        )
    finally:
        for sock in crowd:
            sock.close()
        server.stop()


def yaml_file(tree: Tree, flag: str, kind: str) -> str:
    bomb_at = {"--config": "interval: BOMB\n", "--scenario": "gpus: [{board: BOMB}]\n"}.get(
        flag, "basic_auth_users: {prometheus: BOMB}\n"
    )  # where the value is looked at (and, before, quoted in the error)
    bodies: dict[str, str | bytes] = {
        "alias bomb": alias_bomb(9, bomb_at),
        "deep nesting": "[" * 100_000 + "]" * 100_000,
        "not UTF-8": b"interval: \xff\xfe\n",
    }
    path = write(tree.scratch, f"{flag[2:]}-{kind.replace(' ', '-')}.yaml", bodies[kind])
    listen = f"127.0.0.1:{free_port()}"
    return tree.run("serve", "--source", "synthetic", "--listen", listen, flag, str(path)).outcome()


def config_dev_zero(tree: Tree) -> str:
    return tree.run("serve", "--config", "/dev/zero", timeout=60).outcome()


def live_reload_bomb(tree: Tree) -> str:
    config = users_config(tree.scratch, name="live.yml")
    server = tree.serve("--source", "synthetic", "--web-config", str(config), memory=True)
    try:
        config.write_text(alias_bomb(9, "basic_auth_users: {prometheus: BOMB}\n"))
        statuses, worst = [], 0.0
        ends = time.monotonic() + 15
        while time.monotonic() < ends:
            status, seconds = server.get("/healthz", timeout=60)
            statuses.append(status)
            worst = max(worst, seconds)
            time.sleep(0.1)
        alive = server.proc.poll() is None
        seen = ", ".join(f"{s or 'no answer'} x{statuses.count(s)}" for s in sorted(set(statuses)))
        return f"/healthz worst {worst:.1f} s ({seen}); {'still serving' if alive else 'exited'}"
    finally:
        server.stop()


def surrogate_scenario(tree: Tree) -> str:
    path = write(tree.scratch, "surrogate.yaml", 'driver_version: "550.\\ud800"\ngpus: [{mig: false, activity: 0.5}]\n')
    try:
        server = tree.serve("--source", "synthetic", "--scenario", str(path))
    except RuntimeError:
        return tree.run("serve", "--source", "synthetic", "--scenario", str(path)).outcome()
    try:
        return f"/metrics {server.get('/metrics')[0]}, /readyz {server.get('/readyz')[0]}"
    finally:
        server.stop()


def nan_scenario(tree: Tree) -> str:
    path = write(tree.scratch, "nan.yaml", "gpus: [{mig: false, activity: .nan, memory: .nan}]\n")
    try:
        server = tree.serve("--source", "synthetic", "--scenario", str(path))
    except RuntimeError:
        return tree.run("serve", "--source", "synthetic", "--scenario", str(path)).outcome()
    try:
        body = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
        shown = next((line.split()[-1] for line in body.splitlines() if line.startswith("mig_gpu_gr_engine")), "?")
        return f"accepted; activity shown as {shown}"
    finally:
        server.stop()


def plan_count(tree: Tree, *args: str) -> str:
    return tree.run("plan", *args, timeout=120).outcome()


def sigterm_in_flood(tree: Tree) -> str:
    outcomes = []
    for _ in range(3):
        server = tree.serve("--source", "synthetic", "--web-config", str(users_config(tree.scratch, 12, "term.yml")))
        flood = FloodProcess(server.url + "/metrics", 32, "prometheus")
        time.sleep(2)
        server.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = server.proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - started
        flood.stop()
        server.stop()
        fatal = " FATAL" if "FATAL" in server.log() else ""
        outcomes.append(f"exit {code} in {elapsed:.1f} s{fatal}")
    return "; ".join(outcomes)


def duplicate_config_key(tree: Tree) -> str:
    path = write(tree.scratch, "dup.yaml", "interval: 5\ninterval: 1\n")
    run = tree.run("serve", "--config", str(path), "--listen", "bad")
    return (
        "refused: line" + run.stderr.strip().rpartition(": line")[2][:60]
        if "twice" in run.stderr
        else "accepted (last wins)"
    )


def scenario_is_a_password_file(tree: Tree) -> str:
    path = write(tree.scratch, "htpasswd", f"prometheus: {bcrypt_hash('secret', 4)}\n")
    run = tree.run("serve", "--source", "synthetic", "--scenario", str(path), timeout=20)
    quoted = "quotes the file (the user name)" if "prometheus" in run.stderr else "quotes nothing of it"
    return f"exit {run.code}, {quoted}"


def long_fault_reason(tree: Tree) -> str:
    path = write(
        tree.scratch,
        "reason.yaml",
        f"gpus: [{{mig: false}}]\nfaults: [{{gpu: 0, kind: fail, reason: {'x' * 100_000}}}]\n",
    )
    try:
        tree.serve("--source", "synthetic", "--scenario", str(path)).stop()
    except RuntimeError:
        run = tree.run("serve", "--source", "synthetic", "--scenario", str(path), timeout=20)
        return f"refused: exit {run.code}, {len(run.stderr)} characters of error"
    return "accepted"


def config_name_newline(tree: Tree) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "plan", "1g.10gb", "--output", "mig-parted", "--config-name", "a\nevil: 1"],
        cwd=tree.root,
        env=tree.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    injected = "\nevil: 1" in proc.stdout
    return f"exit {proc.returncode}{', `evil: 1` injected into the YAML' if injected else ', nothing written'}"


CASES: list[tuple[str, str, Callable[[Tree], str]]] = [
    ("1", "web-config emptied on a live reload", reload_to_empty),
    ("2", "48 connections of wrong passwords for 20 s (cost 10)", password_flood),
    ("2", "1,000 TLS connections of wrong passwords for 30 s", tls_flood),
    ("3", "cost-12 hash: 401 time, wrong password vs unknown user (medians of 7)", user_timing),
    ("4", "1,000 malformed requests, --log-level error: what is logged", lambda t: bad_request_logs(t, "error")),
    ("4", "1,000 malformed requests, default level: what is logged", lambda t: bad_request_logs(t, "info")),
    ("4", "1,100 silent connections at 1,024 open files", silent_crowd),
    *(
        ("5", f"{flag} with {kind}", lambda t, f=flag, k=kind: yaml_file(t, f, k))
        for flag in ("--config", "--scenario", "--web-config")
        for kind in ("alias bomb", "deep nesting", "not UTF-8")
    ),
    ("5", "--config /dev/zero", config_dev_zero),
    ("5", "live web-config reload to an alias bomb (9^9 values)", live_reload_bomb),
    ("6", "scenario with a lone surrogate in driver_version", surrogate_scenario),
    ("6", "scenario with NaN activity and memory", nan_scenario),
    ("6", "plan 99999999999999x1g.10gb", lambda t: plan_count(t, "99999999999999x1g.10gb")),
    ("6", "plan with a 5,000-digit count", lambda t: plan_count(t, "9" * 5000 + "x1g.10gb")),
    ("6", "plan --fleet 100000000x1g.10gb", lambda t: plan_count(t, "--fleet", "100000000x1g.10gb")),
    ("8", "SIGTERM after 2 s of a flood (cost 12), three times", sigterm_in_flood),
    ("9", "--config with a key given twice", duplicate_config_key),
    ("9", "--scenario pointed at a password-hash file", scenario_is_a_password_file),
    ("9", "a 100,000-character fault reason", long_fault_reason),
    ("9", "plan --config-name with a newline", config_name_newline),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the tree before the fixes")
    parser.add_argument("--after", type=Path, default=HERE.parent, help="the tree after (default: this one)")
    parser.add_argument("--only", default="", help="run only the cases whose description contains this")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    scratch = args.out / "hostile"
    shutil.rmtree(scratch, ignore_errors=True)
    load_start = os.getloadavg()[0]
    rows = ["| item | attack | before | after |", "| --- | --- | --- | --- |"]
    for item, what, attack in CASES:
        if args.only not in what:
            continue
        outcomes = []
        for name, root in (("before", args.before), ("after", args.after)):
            folder = scratch / name
            folder.mkdir(parents=True, exist_ok=True)
            try:
                outcomes.append(attack(Tree(root.resolve(), folder)))
            except Exception as exc:  # an attack that breaks the harness is an outcome too
                outcomes.append(f"harness error: {type(exc).__name__}: {str(exc)[:80]}")
        rows.append(f"| {item} | {what} | {outcomes[0]} | {outcomes[1]} |")
        print(rows[-1], flush=True)
    header = (
        f"{os.cpu_count()} cores; load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"children that might take gigabytes limited to {MEMORY_LIMIT / 2**30:.1f} GiB of address space."
    )
    report = header + "\n\n" + "\n".join(rows) + "\n"
    (args.out / "hostile.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
