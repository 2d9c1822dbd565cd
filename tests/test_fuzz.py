"""Fuzzed parsers: config, scenario and web-config files end in a result or one clean error, never a crash.

Documents mix the formats' own keys with huge numbers and any Unicode (lone surrogates included); every
error is one line naming the file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.cli.settings import OPTIONS, ConfigError, resolve
from exporter.http import webconfig
from exporter.sources.synthetic.scenario import ScenarioError, parse

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(10**150), max_value=10**150),  # past the 100 digits an integer may have
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.text(st.characters(exclude_categories=()), max_size=6),  # lone surrogates, controls, format characters
    st.sampled_from(["idle", "h100-80gb", "3g.40gb", "1g.10gb", "7g.80gb", "2c.7g.80gb", "steady", "diurnal",
                     "bursty", "ramp", "TLS12", "TLS13", "RequireAndVerifyClientCert", "hang", "fail", "0.5", "x"]),
)  # fmt: skip


def documents(keys: list[str]) -> st.SearchStrategy[Any]:
    """YAML-able documents whose mapping keys are mostly the format's own, so fuzzing reaches deep."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=6))
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=5)),
        max_leaves=25,
    )


def as_yaml(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True)


RAW_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["{", "- [", "a: b: c", "!!python/object:os.system x", "&a [*a]", "%YAML 9.9\n---\n", "\t-"]),
)

CONFIG_KEYS = [o.key for o in OPTIONS]


@FUZZ
@given(st.one_of(documents(CONFIG_KEYS).map(as_yaml), RAW_TEXT))
def test_config_file_fuzz(text: str) -> None:
    """Any --config file yields settings or a ConfigError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text)
        try:
            resolve({"config": str(path)}, environ={})
        except ConfigError as exc:
            assert str(path) in str(exc) or "--" in str(exc) or "default" in str(exc)
            assert "\n" not in str(exc)


SCENARIO_KEYS = [
    "name", "seed", "driver_version", "gpus", "faults", "board", "mig", "instances", "activity", "memory", "ratios",
    "profile", "start", "gi", "compute_instances", "pattern", "level", "mean", "amplitude", "peak_hour", "period",
    "high", "low", "duty", "offset", "end", "noise", "sm_active", "gpu", "kind", "after", "duration", "reason",
]  # fmt: skip


def scenario_documents() -> st.SearchStrategy[Any]:
    """Mostly well-shaped scenarios with fuzzed leaves, plus free-form documents."""
    instance = st.fixed_dictionaries(
        {"profile": st.sampled_from(["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "1g.20gb", "9g"])},
        optional={k: documents(SCENARIO_KEYS) for k in ("start", "gi", "activity", "memory", "compute_instances")},
    )
    gpu = st.fixed_dictionaries(
        {},
        optional={
            "board": st.sampled_from(["h100-80gb", "a100-40gb", "x"]),
            "mig": st.booleans(),
            "instances": st.lists(instance, max_size=5),
            "activity": documents(SCENARIO_KEYS),
        },
    )
    shaped = st.fixed_dictionaries(
        {"gpus": st.lists(gpu, max_size=3)}, optional={"faults": documents(SCENARIO_KEYS), "seed": SCALARS}
    )
    return st.one_of(shaped, documents(SCENARIO_KEYS))


@FUZZ
@given(st.one_of(scenario_documents().map(as_yaml), RAW_TEXT))
def test_scenario_fuzz(text: str) -> None:
    """Any scenario text yields a scenario or a ScenarioError naming the origin."""
    try:
        scenario = parse(text, origin="fuzz.yaml")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)
    else:  # whatever loads can be written out (as label values of every scrape)
        (scenario.name + scenario.driver_version + "".join(f.reason for f in scenario.faults)).encode()


WEB_KEYS = [
    "tls_server_config", "http_server_config", "basic_auth_users", "cert_file", "key_file", "client_auth_type",
    "client_ca_file", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
    "curve_preferences", "http2", "headers", "X-Frame-Options", "prometheus",
]  # fmt: skip


def web_config_documents() -> st.SearchStrategy[Any]:
    """Well-shaped web-configs with fuzzed values, plus free-form documents."""
    leaf = documents(WEB_KEYS)
    tls = st.fixed_dictionaries({}, optional={k: leaf for k in WEB_KEYS[3:12]})
    http = st.fixed_dictionaries({}, optional={"http2": leaf, "headers": leaf})
    shaped = st.fixed_dictionaries(
        {}, optional={"tls_server_config": tls, "http_server_config": http, "basic_auth_users": leaf}
    )
    return st.one_of(shaped, leaf)


@FUZZ
@given(st.one_of(web_config_documents().map(as_yaml), RAW_TEXT))
def test_web_config_fuzz(text: str) -> None:
    """Any web-config text yields a configuration or a WebConfigError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            webconfig.parse(text, origin="fuzz.yml", base=Path(folder))
        except webconfig.WebConfigError as exc:
            assert str(exc).startswith("web-config fuzz.yml") and "\n" not in str(exc)


PLAN_WORDS = st.one_of(
    st.sampled_from(["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "3g.20gb",
                     "--gpu", "h100-80gb", "a100-40gb", "h200-141gb", "--fleet", "--output", "json", "text",
                     "mig-parted", "--config-name", "", "x", "0x1g.10gb", "-1x2g.20gb"]),
    st.builds("{}x{}".format, st.integers(min_value=0, max_value=40), st.sampled_from(["1g.10gb", "3g.40gb", "7g"])),
    st.text(max_size=10),
)  # fmt: skip


@FUZZ
@given(st.lists(PLAN_WORDS, max_size=8))
@example(["1g.10gb", "--gpu", "1g.10gb", "\n"])  # argparse's "unrecognized arguments" did not escape it
def test_plan_input_fuzz(words: list[str]) -> None:
    """Any `mig-exporter plan` arguments end in a plan (0), a does-not-fit (1) or one clean error line (2)."""
    import contextlib
    import io

    from exporter.cli.main import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(["plan", *words])
        except SystemExit as exc:  # --help and --version print and exit 0
            code = 0 if exc.code in (0, None) else 2
    assert code in (0, 1, 2)
    if code == 2:
        assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("mig-exporter: error: ")
