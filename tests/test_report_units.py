"""The capacity report's parts without a Prometheus: flags, query chunks, statistics, right-sizing, errors."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer

from exporter.cli.main import build_parser
from exporter.cli.report import ProgressBar, options_from
from exporter.mig.catalog import board
from exporter.report.prometheus import MAX_POINTS_PER_QUERY, PrometheusClient, PrometheusError, chunks
from exporter.report.rightsize import Policy, recommend
from exporter.report.stats import Accumulator, Grid, InstanceKey, Summary, label_number
from exporter.timespec import format_duration, parse_duration
from exporter.units import GIB
from tests.support.processes import free_port

H100 = board("h100-80gb")


def run_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "30 days"], "--window: '30 days' is not a duration: use a number and a unit"),
        (["--window", "0d"], "--window: '0d' must be longer than zero"),
        (["--step", "5"], "--step: '5' is not a duration"),
        (["--step", "500ms"], "--step: '500ms' is shorter than one second"),
        (["--window", "1h", "--step", "2h"], "--step 2h is longer than --window 1h"),
        (["--end", "yesterday"], "--end: 'yesterday' is not a time"),
        (["--output", "pdf"], "--output: invalid value 'pdf': expected one of md, html, json"),
        (["--match", "instance=gpu-1"], "--match: 'instance=gpu-1' is not a list of label matchers"),
        (["--idle-threshold", "2"], "--idle-threshold: invalid value '2': must be between 0 and 1"),
        (["--headroom", "lots"], "--headroom: invalid value 'lots': expected a number"),
        (["--bearer-token-file", "/nonexistent/token"], "--bearer-token-file /nonexistent/token: cannot read"),
        (["--basic-auth-user", "ops"], "--basic-auth-user and --basic-auth-password-file go together"),
        (
            ["--basic-auth-user", "ops:x", "--basic-auth-password-file", __file__],
            "--basic-auth-user: invalid value 'ops:x': a user name has no ':'",
        ),
        (["--header", "X-Scope-OrgID"], "--header: invalid value 'X-Scope-OrgID': expected NAME:VALUE"),
    ],
)
def test_report_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    """Each bad report flag ends with exit 2 and one stderr line naming it, before any query is sent."""
    result = run_report("--prometheus", "http://127.0.0.1:1", *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_report_bad_url_and_missing_url_exit_2() -> None:
    """A URL that is not http(s) and a missing --prometheus are one-line errors with exit 2."""
    bad = run_report("--prometheus", "ftp://prom:9090")
    assert bad.returncode == 2 and "--prometheus: 'ftp://prom:9090' is not a Prometheus URL" in bad.stderr
    missing = run_report("--window", "7d")
    assert missing.returncode == 2 and "the following arguments are required: --prometheus" in missing.stderr


def test_report_unreachable_prometheus_exits_2_naming_the_url() -> None:
    """Nothing listening at the URL: exit 2 with `cannot reach Prometheus at URL`, no traceback."""
    url = f"http://127.0.0.1:{free_port()}/prom"
    result = run_report("--prometheus", url, "--window", "1d")
    assert result.returncode == 2
    assert result.stderr.startswith(f"mig-exporter: error: cannot reach Prometheus at {url}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


async def test_report_names_a_server_that_is_not_prometheus(aiohttp_server: AiohttpServer) -> None:
    """A URL whose path prefix is wrong (an HTML 404) is named as not being Prometheus' API."""

    async def not_found(_: web.Request) -> web.Response:
        return web.Response(status=404, text="<html>nope</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/wrong-prefix"
    async with PrometheusClient(url) as client:
        with pytest.raises(PrometheusError, match=r"/wrong-prefix/api/v1/query is not Prometheus' HTTP API \(HTTP 404"):
            await client.query("up", 0)
        assert await client.retention() is None


async def test_report_passes_on_prometheus_query_errors(aiohttp_server: AiohttpServer) -> None:
    """An API error (bad query, HTTP 422) is reported with the query and Prometheus' own message."""

    async def reject(_: web.Request) -> web.Response:
        return web.json_response({"status": "error", "errorType": "execution", "error": "too many samples"}, status=422)

    app = web.Application()
    app.router.add_route("POST", "/api/v1/query_range", reject)
    server = await aiohttp_server(app)
    async with PrometheusClient(f"http://127.0.0.1:{server.port}") as client:
        with pytest.raises(PrometheusError, match=r"rejected 'up' \(HTTP 422\): too many samples"):
            await client.query_range("up", 0, 3600, 60)


@given(
    start=st.integers(0, 2_000_000_000),
    points=st.integers(1, 100_000),
    step=st.sampled_from([1, 15, 60, 300, 3600]),
    limit=st.integers(1, MAX_POINTS_PER_QUERY),
)
def test_report_range_queries_cover_the_window_in_chunks(start: int, points: int, step: int, limit: int) -> None:
    """Chunks hold every evaluation time of the window exactly once and never more than the limit each."""
    end = start + (points - 1) * step
    parts = chunks(start, end, step, limit)
    assert parts[0][0] == start and parts[-1][1] == end
    counted = 0
    for (a, b), nxt in zip(parts, [*parts[1:], None], strict=True):
        n = round((b - a) / step) + 1
        assert 1 <= n <= limit
        counted += n
        if nxt is not None:
            assert nxt[0] == b + step
    assert counted == points


@pytest.mark.parametrize("text", ["30d", "5m", "1h30m", "90s", "4m59s999ms", "2w"])
def test_report_durations_round_trip(text: str) -> None:
    """Prometheus durations parse to seconds and format back to an equal duration."""
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=500))
def test_report_p95_is_within_half_a_bin_of_the_exact_percentile(values: list[float]) -> None:
    """The histogram p95, mean, max and idle share match exact figures over the same step means."""
    grid = Grid(0, (len(values) - 1) * 60.0, 60.0)
    acc = Accumulator(grid, idle_threshold=0.05)
    points = [(i * 60.0, v) for i, v in enumerate(values)]
    acc.add_activity_means(points)
    acc.add_activity_maxima(points)
    summary = acc.summary()
    assert summary is not None
    ordered = sorted(values)
    exact = ordered[math.ceil(0.95 * len(values)) - 1]
    assert summary.p95 == pytest.approx(exact, abs=0.0005 + 1e-12)
    assert summary.mean == pytest.approx(sum(values) / len(values))
    assert summary.max == pytest.approx(max(values), abs=0.0005 + 1e-12)
    assert summary.idle_fraction == sum(1 for v in values if v < 0.05) / len(values)
    assert len(summary.heat) == min(168, len(values))


def summary(p95: float, memory_gib: float) -> Summary:
    return Summary(
        samples=100,
        mean=p95 * 0.8,
        p95=p95,
        max=p95,
        idle_fraction=1.0 if p95 < 0.05 else 0.0,
        memory_mean_bytes=memory_gib * GIB,
        memory_max_bytes=memory_gib * GIB,
        heat=(),
        first_seen=0,
        last_seen=0,
    )


@pytest.mark.parametrize(
    ("current", "p95", "memory_gib", "action", "profile"),
    [
        ("3g.40gb", 0.0, 0.0, "reclaim", None),
        ("3g.40gb", 0.04, 30.0, "reclaim", None),  # idle, even while holding memory
        ("3g.40gb", 0.1, 7.9, "resize", "1g.10gb"),
        ("3g.40gb", 0.1, 15.0, "resize", "1g.20gb"),  # memory decides
        ("3g.40gb", 0.5, 15.0, "resize", "2g.20gb"),  # 0.5 x 3 x 1.2 = 1.8 slices
        ("3g.40gb", 0.1, 30.0, "keep", "3g.40gb"),  # needs the 40 GB
        ("3g.40gb", 0.7, 30.0, "keep", "3g.40gb"),
        ("3g.40gb", 1.0, 39.0, "keep", "3g.40gb"),  # saturated: kept, never grown
        ("7g.80gb", 0.3, 30.0, "resize", "3g.40gb"),  # 0.3 x 7 x 1.2 = 2.52 slices
        ("1g.10gb+me", 0.2, 2.0, "keep", "1g.10gb+me"),  # keeps its media engines
    ],
)
def test_report_right_sizing(current: str, p95: float, memory_gib: float, action: str, profile: str | None) -> None:
    """The smallest profile covering p95 demand and peak memory with headroom; idle ones reclaimed."""
    rec = recommend(summary(p95, memory_gib), H100.profile(current), H100, Policy())
    assert (rec.action, rec.profile) == (action, profile), rec.reason


def test_report_headroom_is_configurable() -> None:
    """With no compute headroom, a 3g at 33% p95 fits one slice; with 20% it needs two."""
    light = summary(0.33, 5.0)
    assert recommend(light, H100.profile("3g.40gb"), H100, Policy(compute_headroom=0.0)).profile == "1g.10gb"
    assert recommend(light, H100.profile("3g.40gb"), H100, Policy(compute_headroom=0.2)).profile == "2g.20gb"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_report_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    """The progress bar draws on a terminal, ends its line after an error, and is silent on a file or pipe."""
    tty, pipe = _Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(stream, width=10)
        bar(4, 8)
        bar(8, 8)
    assert tty.getvalue() == "\rquerying Prometheus [#####.....] 4/8\rquerying Prometheus [##########] 8/8\n"
    assert pipe.getvalue() == ""
    interrupted = _Terminal()
    bar = ProgressBar(interrupted, width=4)
    bar(1, 4)
    bar.close()
    bar.close()
    assert interrupted.getvalue() == "\rquerying Prometheus [#...] 1/4\n"


@pytest.mark.parametrize(
    ("args", "output"),
    [
        ([], "md"),
        (["--out", "review.HTML"], "html"),
        (["--out", "review.json"], "json"),
        (["--out", "review"], "md"),
        (["--out", "review.markdown"], "md"),
        (["--out", "review.html", "--output", "md"], "md"),
        (["--out", "review.pdf", "--output", "html"], "html"),
    ],
)
def test_report_output_format_follows_the_out_extension(args: list[str], output: str) -> None:
    """Without --output the format follows --out's extension (html, json), Markdown when it has none."""
    parsed = build_parser().parse_args(["report", "--prometheus", "http://127.0.0.1:9090", *args])
    assert options_from(parsed, 1_790_000_000.0).output == output


@pytest.mark.parametrize("out", ["r.pdf", "review.txt", "r.HTML.gz"])
def test_report_out_with_an_unknown_extension_exits_2_and_writes_nothing(tmp_path: Path, out: str) -> None:
    """`--out r.pdf` is refused before any query (it would be Markdown in a .pdf), naming the known extensions."""
    result = run_report("--prometheus", "http://127.0.0.1:1", "--out", str(tmp_path / out))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    suffix = Path(out).suffix
    assert (
        f"--out {tmp_path / out}: unknown extension {suffix!r}: use .md, .markdown, .html, .htm, .json" in result.stderr
    )
    assert "or name the format with --output {md,html,json}" in result.stderr
    assert not (tmp_path / out).exists()


def test_label_numbers_sort_numerically_and_odd_labels_are_kept() -> None:
    """GPU and GI labels sort as numbers; one that is not (empty, a superscript digit) sorts first and stays text."""
    keys = [InstanceKey("n", gpu, "1", "1g.10gb") for gpu in ("10", "2", "²", "")]
    assert [k.gpu for k in sorted(keys, key=InstanceKey.sort_key)] == ["²", "", "2", "10"]
    assert (label_number("7", None), label_number("²", None), label_number("", "none")) == (7, None, "none")
