"""The command line: bad input exits 2 with one line, settings from flags, env and config file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.cli.main import main
from exporter.cli.settings import OPTIONS, ConfigError, Listen, resolve, unknown_variables
from tests.support.processes import LOOPBACK, free_port


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=30, env=env
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--interval", "0"], "--interval: invalid value '0': must be between 0.05 and 3600 seconds"),
        (["serve", "--listen", "9401"], "--listen: invalid value '9401': expected HOST:PORT"),
        (["serve", "--listen", "0.0.0.0:99999"], "port '99999' is not a number 1..65535"),
        (["serve", "--source", "gpu"], "--source: invalid value 'gpu': expected one of auto, dcgm, nvml, synthetic"),
        (["serve", "--bogus"], "unrecognized arguments: --bogus"),
        (["serve", "--source", "synthetic", "--scenario", "nope"], "scenario 'nope' is neither a built-in"),
        (["serve", "--config", "/nonexistent.yaml"], "--config /nonexistent.yaml: cannot read"),
        (
            ["serve", "--names", "dcgm", "--dcgm-hostname-label", "host"],
            "--dcgm-hostname-label: invalid value 'host': expected one of Hostname, hostname",
        ),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    """Each bad flag ends with exit code 2 and a single stderr line naming it, no traceback."""
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mig-exporter: error: ")
    assert message in lines[0]


def test_bad_scenario_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    """A scenario file with a bad profile names the file, the key path and the valid profiles."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus:\n  - instances:\n      - profile: 3g.41gb\n")
    result = run_cli("serve", "--source", "synthetic", "--scenario", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{bad}: gpus[0].instances[0].profile: unknown MIG profile '3g.41gb'" in result.stderr


def test_auto_without_gpu_libraries_hints_at_synthetic() -> None:
    """`--source auto` on a machine with no GPU source says to use --source synthetic."""
    result = run_cli("serve", "--listen", "127.0.0.1:1")
    assert result.returncode == 2
    assert "use --source synthetic" in result.stderr


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    """An unknown key or a bad value in the config file names the file and the key."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("intervall: 5\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown setting 'intervall'"):
        resolve({"config": str(cfg)}, environ={})
    cfg.write_text("interval: fast\n")
    with pytest.raises(ConfigError, match=r"c.yaml: interval: invalid value 'fast'"):
        resolve({"config": str(cfg)}, environ={})
    cfg.write_text("[1, 2]\n")
    assert main(["serve", "--config", str(cfg)]) == 2


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    """A flag beats MIG_EXPORTER_*, which beats the config file, which beats the default."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("interval: 7\nscenario: dgx-h100\nlisten: 127.0.0.1:9000\n")
    env = {"MIG_EXPORTER_INTERVAL": "3", "MIG_EXPORTER_CONFIG": str(cfg)}
    s = resolve({"interval": None}, environ=env)
    assert (s.interval, s.scenario, s.listen, s.source) == (3.0, "dgx-h100", Listen("127.0.0.1", 9000), "auto")
    s = resolve({"interval": "2"}, environ=env)
    assert s.interval == 2.0
    assert resolve({}, environ={}).listen == Listen("0.0.0.0", 9401)


def test_bad_env_var_names_the_variable() -> None:
    """A bad MIG_EXPORTER_* value names the variable."""
    with pytest.raises(ConfigError, match="MIG_EXPORTER_LISTEN: invalid value"):
        resolve({}, environ={"MIG_EXPORTER_LISTEN": "nowhere"})


def test_ipv6_listen_address() -> None:
    """[::1]:9401 parses to host ::1."""
    assert resolve({"listen": "[::1]:9401"}, environ={}).listen == Listen("::1", 9401)


def test_serve_help_lists_choices_and_no_empty_defaults() -> None:
    """`serve --help` shows every flag, the choices of those that have them, and never "default None"."""
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for flag in (o.flag for o in OPTIONS):
        assert flag in text
    for choices in ("{auto,dcgm,nvml,synthetic}", "{debug,info,warning,error}", "{native,dcgm}"):
        assert f"{choices} " in text
    assert "None" not in text
    assert "(env MIG_EXPORTER_DEADLINE)" in text and "(env MIG_EXPORTER_SOURCE; default auto)" in text


def test_unknown_environment_variable_is_a_warning_with_a_suggestion() -> None:
    """A MIG_EXPORTER_* variable that names no setting is reported with the likeliest one, not silently ignored."""
    assert unknown_variables({"MIG_EXPORTER_INTERVALL": "5", "MIG_EXPORTER_INTERVAL": "5", "HOME": "/"}) == [
        "environment variable MIG_EXPORTER_INTERVALL names no setting and is ignored; "
        "did you mean MIG_EXPORTER_INTERVAL?"
    ]
    assert unknown_variables({"MIG_EXPORTER_CONFIG": "c.yaml", "MIG_EXPORTER_POD_LABELS": "true"}) == []
    (warning,) = unknown_variables({"MIG_EXPORTER_ZZZ": "1"})
    assert warning.startswith("environment variable MIG_EXPORTER_ZZZ names no setting and is ignored (known: ")


def _serve(port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--source",
            "synthetic",
            "--listen",
            f"127.0.0.1:{port}",
            "--kubelet-socket",
            "",
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_serving_is_logged_once_the_port_is_bound_and_the_warning_is_in_the_log() -> None:
    """The "serving on" line comes when the port answers; an unknown MIG_EXPORTER_* variable is warned about first."""
    port = free_port()
    process = _serve(port, env={"MIG_EXPORTER_SCENARO": "dgx-h100"})
    try:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if "serving" in line:
                with socket.create_connection((LOOPBACK, port), timeout=1):  # bound before it says so
                    break
        assert f"serving synthetic source on http://127.0.0.1:{port}" in seen[-1]
        assert any("WARNING" in s and "MIG_EXPORTER_SCENARO names no setting" in s for s in seen)
        assert any("did you mean MIG_EXPORTER_SCENARIO?" in s for s in seen)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_a_port_in_use_is_one_error_line_and_never_says_serving() -> None:
    """With the address taken, serve exits 1 with "cannot listen on" and no "serving on" line before it."""
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _serve(port)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "serving" not in err and "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == f"mig-exporter: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


# From 0.2 s on: before that, a loaded machine may still be starting the interpreter itself (site, .pth files),
# where no program can catch the signal.
@pytest.mark.parametrize("delay", [0.2, 0.35, 0.6, 1.0])
def test_ctrl_c_while_starting_ends_quietly(delay: float) -> None:
    """SIGINT at any moment of the first second stops serve without a traceback.

    The status is 0 once serving, 130 while starting, or death by SIGINT (which a shell also reports as 130)
    where asyncio re-raises the signal after restoring the default handler.
    """
    process = _serve(free_port())
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert process.returncode in (0, 130, -signal.SIGINT)


def test_a_setting_given_twice_in_the_config_file_is_refused(tmp_path: Path) -> None:
    """A key given twice in --config is an error naming it and its line, not a silent last-wins."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("interval: 5\nsource: synthetic\ninterval: 1\n")
    result = run_cli("serve", "--config", str(cfg))
    assert result.returncode == 2
    assert result.stderr == f"mig-exporter: error: --config {cfg}: line 3: key 'interval' is given twice\n"


def test_the_connection_limit_is_a_setting() -> None:
    """--http-max-connections takes a positive count (default 128), like every flag also from the environment."""
    assert resolve({}, environ={}).http_max_connections == 128
    assert resolve({}, environ={"MIG_EXPORTER_HTTP_MAX_CONNECTIONS": "32"}).http_max_connections == 32
    with pytest.raises(ConfigError, match=r"--http-max-connections: invalid value '0': expected a number"):
        resolve({"http_max_connections": "0"}, environ={})


def test_serve_loads_no_other_subcommand() -> None:
    """`serve` imports none of the report's, planner's or history's modules; the full --help lists them all."""
    code = (
        "import sys; from exporter.cli.main import main; code = main(['serve', '--interval', '0']);"
        "print(code, sorted(m for m in sys.modules if m.startswith(('exporter.report', 'exporter.cli.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "2 ['exporter.cli.main', 'exporter.cli.serve', 'exporter.cli.settings']", done.stderr
    help_text = run_cli("--help").stdout
    assert all(command in help_text for command in ("serve", "plan", "report", "simulate-history", "doctor"))
