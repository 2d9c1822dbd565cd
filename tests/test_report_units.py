"""The capacity report's parts without a Prometheus: flags, query chunks, statistics, right-sizing, errors."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer

from exporter.cli.main import build_parser
from exporter.cli.report import ProgressBar, options_from
from exporter.contract.thresholds import THRESHOLD_TOLERANCE
from exporter.mig.catalog import BOARDS, board
from exporter.report import spans
from exporter.report.prometheus import PrometheusClient, PrometheusError, QueryTooLargeError
from exporter.report.rightsize import Policy, compute_slices_of, fit_thresholds, recommend
from exporter.report.stats import Grid, InstanceKey, Summary, Tally, label_number
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
        retention = await client.retention()
        assert retention.value is None and "does not serve /api/v1/status/runtimeinfo" in retention.unknown_because


async def test_report_passes_on_prometheus_query_errors(aiohttp_server: AiohttpServer) -> None:
    """An API error (HTTP 422) is reported with the query and Prometheus' own message, as a refusal for size."""

    async def reject(_: web.Request) -> web.Response:
        return web.json_response({"status": "error", "errorType": "execution", "error": "too many samples"}, status=422)

    app = web.Application()
    app.router.add_route("POST", "/api/v1/query_range", reject)
    server = await aiohttp_server(app)
    async with PrometheusClient(f"http://127.0.0.1:{server.port}") as client:
        with pytest.raises(QueryTooLargeError, match=r"rejected 'up' \(HTTP 422\): too many samples"):
            await client.query_range("up", 0, 3600, 60)


@given(
    start=st.integers(0, 2_000_000_000),
    points=st.integers(1, 30_000),
    step=st.sampled_from([15, 60, 300, 420, 3600]),
    limit=st.integers(1, 5_000),
)
def test_report_spans_cover_the_window_in_whole_days_or_pieces_of_one(
    start: int, points: int, step: int, limit: int
) -> None:
    """Spans hold every step once, at most `limit` each, and are whole days or inside one day; splits keep that."""
    grid = Grid(start, start + (points - 1) * step, step)
    parts = spans.plan(grid, limit)
    assert parts[0].first == grid.start and parts[-1].last == grid.end
    counted = 0
    for span, nxt in zip(parts, [*parts[1:], None], strict=True):
        n = spans.steps(grid, span)
        assert 1 <= n <= limit
        assert spans.whole_days(grid, span) or grid.day(span.first) == grid.day(span.last)
        counted += n
        if nxt is not None:
            assert nxt.first == span.last + step
        halves = spans.split(grid, span)
        if halves is None:
            assert n == 1
        else:
            assert halves[0].first == span.first and halves[1].last == span.last
            assert halves[1].first == halves[0].last + step
            for half in halves:
                assert spans.whole_days(grid, half) or grid.day(half.first) == grid.day(half.last)
    assert counted == points


@pytest.mark.parametrize("text", ["30d", "5m", "1h30m", "90s", "4m59s999ms", "2w"])
def test_report_durations_round_trip(text: str) -> None:
    """Prometheus durations parse to seconds and format back to an equal duration."""
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


DEFAULT_POLICY = Policy()


def tally(values: list[float], profile: str, policy: Policy = DEFAULT_POLICY, memory_gib: float = 0.0) -> Tally:
    """A tally of step means, counted the way the server counts them (one day, one span)."""
    acc = Tally(policy.idle_threshold, fit_thresholds(profile, policy))
    acc.steps, acc.total, acc.peak = len(values), sum(values), max(values)
    for slices, threshold in acc.thresholds.items():
        acc.fits[slices] = sum(1 for v in values if v <= threshold)
    acc.active[0] = sum(1 for v in values if v >= policy.idle_threshold - THRESHOLD_TOLERANCE)
    ordered = sorted(values)
    acc.quantiles.append((len(values), ordered[math.ceil(0.95 * len(values)) - 1]))
    acc.memory_peak, acc.memory_total, acc.memory_samples = memory_gib * GIB, memory_gib * GIB, 1
    return acc


PROFILES = sorted({p.name for b in BOARDS.values() for p in b.profiles})


@given(
    values=st.lists(st.floats(0, 1), min_size=1, max_size=400),
    profile=st.sampled_from(PROFILES),
    headroom=st.sampled_from([0.0, 0.2, 0.5]),
)
def test_report_p95_tests_from_counts_equal_tests_on_the_exact_p95(
    values: list[float], profile: str, headroom: float
) -> None:
    """Counts at each threshold decide exactly what the nearest-rank p95 itself would: idle, and fits n slices."""
    policy = Policy(compute_headroom=headroom)
    summary = tally(values, profile, policy).summary(0)
    assert summary is not None
    p95 = sorted(values)[math.ceil(0.95 * len(values)) - 1]
    assert summary.p95_idle == (p95 < policy.idle_threshold - THRESHOLD_TOLERANCE)
    current = compute_slices_of(profile)
    assert current is not None
    for slices, threshold in fit_thresholds(profile, policy).items():
        assert summary.p95_fits(slices) == (p95 <= threshold)
        assert threshold == pytest.approx(slices / (current * (1 + headroom)), abs=2 * THRESHOLD_TOLERANCE)
    assert summary.mean == pytest.approx(sum(values) / len(values))
    assert summary.idle_fraction == sum(1 for v in values if v < 0.05 - THRESHOLD_TOLERANCE) / len(values)
    assert summary.p95 == pytest.approx(p95, abs=1e-4)  # the shown p95 here is the exact one, within its bracket


def test_report_threshold_tests_hold_against_float_round_trips() -> None:
    """0.04999999999999999 (Prometheus) and 0.05 (VictoriaMetrics, 14 digits) are both at the idle threshold."""
    for value in (0.04999999999999999, 0.05, 0.05000000000000001):
        summary = tally([value] * 20, "1g.10gb").summary(0)
        assert summary is not None and not summary.p95_idle and summary.idle_fraction == 0.0
    # a 2g.20gb's demand at 41.6666...% activity is exactly 1 slice with 20% headroom, whichever way it rounds
    for value in (1 / 2.4, 0.41666666666666, 0.4166666666666667):
        summary = tally([value] * 20, "2g.20gb").summary(0)
        assert summary is not None and summary.p95_fits(1)


def test_report_profile_names_give_the_catalog_compute_slices() -> None:
    """Every profile of every board starts with its compute slices (the server's size groups rely on it)."""
    for b in BOARDS.values():
        for p in b.profiles:
            assert compute_slices_of(p.name) == p.compute_slices, p.name
    assert compute_slices_of("weird") is None


def summary(p95: float, memory_gib: float, profile: str = "3g.40gb", days: tuple[int, ...] = ()) -> Summary:
    """Steps all at `p95` (active ones on `days`, if given)."""
    acc = tally([p95] * 100, profile, memory_gib=memory_gib)
    if days:
        acc.active = Counter({d: 1 for d in days})
    result = acc.summary(0)
    assert result is not None
    return result


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
    rec = recommend(summary(p95, memory_gib, current), H100.profile(current), H100, Policy())
    assert (rec.action, rec.profile) == (action, profile), rec.reason


def daily(
    busy_steps: dict[int, int], level: float, days: int = 14, steps_per_day: int = 288
) -> list[tuple[int, float]]:
    """(day, step mean) for a window of `days`: `busy_steps[d]` steps at `level` on day d, the rest idle."""
    return [(d, level if k < busy_steps.get(d, 0) else 0.0) for d in range(days) for k in range(steps_per_day)]


def periodic_summary(steps: list[tuple[int, float]], profile: str = "1g.10gb") -> Summary:
    acc = tally([v for _, v in steps], profile)
    acc.active = Counter(d for d, v in steps if v >= 0.05)
    result = acc.summary(0)
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("busy", "action", "constraint", "says"),
    [
        ({d: 12 for d in range(14)}, "time-share", "periodic", "active on 14 days"),  # an hour at 80% every day
        ({3: 12, 10: 12}, "time-share", "periodic", "active on 2 days"),  # a weekly job
        ({5: 40}, "reclaim", "idle", "active on 1 day"),  # one job, once
        ({5: 30, 6: 30}, "reclaim", "idle", "active on 2 days"),  # one job that ran over midnight
        ({}, "reclaim", "idle", "idle 100% of the window"),
    ],
)
def test_report_periodic_use_is_a_time_share_candidate_not_reclaimed(
    busy: dict[int, int], action: str, constraint: str, says: str
) -> None:
    """Idle at the p95 but used on separate days: time-share (kept in the layout); a one-off burst: reclaim."""
    rec = recommend(periodic_summary(daily(busy, 0.8)), H100.profile("1g.10gb"), H100, Policy())
    assert (rec.action, rec.constraint) == (action, constraint), rec.reason
    assert says in rec.reason
    assert rec.profile == ("1g.10gb" if action == "time-share" else None)


@pytest.mark.parametrize(
    ("case", "action", "constraint", "reason"),
    [
        (("3g.40gb", 0.9, 30.0), "keep", "compute", "busy: p95 demand exceeds its 3 compute slices"),
        (("3g.40gb", 0.7, 30.0), "keep", "compute", "right-sized: p95 demand needs 3 compute slices"),
        (("3g.40gb", 0.1, 30.0), "keep", "memory", "memory-bound: peak memory 30.0 GiB (33.0 GiB with headroom)"),
        (("1g.10gb", 0.5, 9.5), "keep", "memory", "does not fit its 9.8 GiB; it is never grown"),
        (("2g.20gb", 0.3, 19.0), "keep", "memory", "does not fit its 19.6 GiB"),
        (("3g.40gb", 0.1, 15.0), "resize", "memory", "needs 1g.20gb (compute alone would fit 1g.10gb)"),
        (("3g.40gb", 0.1, 7.9), "resize", "compute", "compute: p95 demand needs 1 compute slice"),
        (("1g.10gb+me", 0.2, 2.0), "keep", "+me", "+me: its media engines exist only on +me profiles"),
    ],
)
def test_report_reasons_name_the_constraint_that_decided(
    case: tuple[str, float, float], action: str, constraint: str, reason: str
) -> None:
    """Busy means compute; an instance kept for its memory says memory; +me says +me."""
    current, p95, memory_gib = case
    rec = recommend(summary(p95, memory_gib, current), H100.profile(current), H100, Policy())
    assert (rec.action, rec.constraint) == (action, constraint), rec.reason
    assert reason in rec.reason
    assert "busy" not in rec.reason or constraint == "compute"


def test_report_headroom_is_configurable() -> None:
    """With no compute headroom, a 3g at 33% p95 fits one slice; with 20% it needs two."""
    bare = tally([0.33] * 100, "3g.40gb", Policy(compute_headroom=0.0), memory_gib=5.0).summary(0)
    padded = tally([0.33] * 100, "3g.40gb", Policy(compute_headroom=0.2), memory_gib=5.0).summary(0)
    assert bare is not None and padded is not None
    assert recommend(bare, H100.profile("3g.40gb"), H100, Policy(compute_headroom=0.0)).profile == "1g.10gb"
    assert recommend(padded, H100.profile("3g.40gb"), H100, Policy(compute_headroom=0.2)).profile == "2g.20gb"


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
    assert tty.getvalue() == (
        "\rquerying Prometheus [#####.....] 4/8 nodes\rquerying Prometheus [##########] 8/8 nodes\n"
    )
    assert pipe.getvalue() == ""
    interrupted = _Terminal()
    bar = ProgressBar(interrupted, width=4)
    bar(1, 4)
    bar.close()
    bar.close()
    assert interrupted.getvalue() == "\rquerying Prometheus [#...] 1/4 nodes\n"


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
