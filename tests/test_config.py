"""Config: validated into frozen dataclasses; every error names the key and the fix."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from artifact_vault.config import ConfigError, load_config, parse_config
from artifact_vault.config_values import parse_duration, parse_size

from .conftest import ROOT


def minimal(**top: object) -> dict:
    return {"cache_dir": "/tmp/unused", "backends": [
        {"type": "http", "config": {"prefix": "/debian/", "base_url": "http://deb.debian.org/debian"}}],
        **top}


def error_of(data: dict, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env or {})
    return info.value.message


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("1h", 3600), ("7d", 604800),
                                          ("250ms", 0.25), (45, 45), ("1.5h", 5400)])
def test_durations_are_written_with_units(text, seconds):
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("text,size", [("500MB", 500 * 1024**2), ("50GB", 50 * 1024**3),
                                       ("1KiB", 1024), (1000, 1000), ("2 TB", 2 * 1024**4)])
def test_sizes_are_written_with_units(text, size):
    assert parse_size(text, "k") == size


def test_the_embedded_default_config_is_valid():
    config = load_config(None)
    assert config.backends[0].prefix == "/debian/"


def test_the_sample_config_is_valid():
    config = load_config(ROOT / "config-sample.yml")
    assert {b.type for b in config.backends} >= {"http"}


def test_config_is_frozen():
    config = parse_config(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http_port = 1  # type: ignore[misc]


def test_an_unknown_key_is_an_error_that_suggests_the_right_one():
    message = error_of(minimal(cache={"max_szie": "1GB"}))
    assert message.startswith("config.cache.max_szie: unknown key") and "max_size" in message


def test_an_unknown_backend_key_names_its_backend():
    data = minimal()
    data["backends"][0]["config"]["tll"] = "10m"
    assert error_of(data).startswith("config.backends[0].config.tll: unknown key; did you mean 'ttl'")


def test_a_wrong_type_names_the_key():
    assert error_of(minimal(http_port="eighty")) == ("config.http_port: 'eighty' is not a TCP port; "
                                                     "use 1-65535")
    assert error_of(minimal(offline="yes")) == "config.offline: expected true or false, got 'yes'"


def test_a_bad_duration_says_how_to_write_one():
    data = minimal()
    data["backends"][0]["config"]["ttl"] = "ten minutes"
    assert "write e.g. 30s, 10m" in error_of(data)


def test_an_unknown_backend_type_lists_the_known_ones():
    data = minimal()
    data["backends"][0]["type"] = "ftp"
    assert error_of(data) == "config.backends[0].type: unknown backend type 'ftp'; use one of: http, pypi, registry-v2, dockerhub"


def test_a_base_url_must_be_http_or_https():
    data = minimal()
    data["backends"][0]["config"]["base_url"] = "ftp://example.org/"
    assert error_of(data).startswith("config.backends[0].config.base_url: 'ftp://example.org/' is not an http(s) URL")


def test_credentials_in_a_base_url_are_refused():
    data = minimal()
    data["backends"][0]["config"]["base_url"] = "https://user:pw@example.org/"
    assert "use the username and password keys" in error_of(data)


@pytest.mark.parametrize("second", ["/debian/", "/debian/security/", "/debian"])
def test_duplicate_or_overlapping_prefixes_are_errors(second):
    data = minimal()
    data["backends"].append({"type": "http", "config": {"prefix": second, "base_url": "http://x.org"}})
    assert "overlaps backends[0]" in error_of(data)


def test_reserved_prefixes_are_refused():
    data = minimal()
    data["backends"][0]["config"]["prefix"] = "/metrics/"
    assert "reserved" in error_of(data)


def test_env_vars_are_expanded_and_secrets_hide_themselves():
    data = minimal()
    data["backends"][0]["config"].update(username="ci", password="${TOKEN}")
    config = parse_config(data, env={"TOKEN": "s3cret"})
    settings = config.backends[0].settings
    assert settings.password == "s3cret"
    assert "s3cret" not in repr(config)


def test_a_missing_env_var_names_the_key_and_the_variable():
    data = minimal()
    data["backends"][0]["config"]["password"] = "${NOPE}"
    assert error_of(data) == ("config.backends[0].config.password: environment variable NOPE is "
                              "not set; export it or remove the reference")


def test_no_backends_is_an_error():
    assert "no backends configured" in error_of({"backends": []})
    assert error_of({}) == "config.backends: required key is missing; add it"


def test_log_level_is_checked_and_case_insensitive():
    assert parse_config(minimal(log_level="debug")).log_level == "DEBUG"
    assert "use one of: DEBUG, INFO" in error_of(minimal(log_level="verbose"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_bad_config_exits_nonzero_with_one_line_and_no_traceback(tmp_path):
    (tmp_path / "c.yml").write_text("threads: 0\nbackends:\n  - type: http\n    config: "
                                    "{prefix: /x/, base_url: 'http://127.0.0.1:9'}\n")
    result = run_cli("--config", "c.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "artifact-vault: config error: config.threads: must be a whole number of at least 1"]


def test_invalid_yaml_names_the_line(tmp_path):
    (tmp_path / "c.yml").write_text("backends:\n  - type: http\n   config: {}\n")
    result = run_cli("--config", "c.yml", cwd=tmp_path)
    assert result.returncode == 2 and "line 3" in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_cache_dir_is_reported_at_start(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a directory")
    (tmp_path / "c.yml").write_text(
        "cache_dir: blocker/cache\nbackends:\n  - type: http\n    config: "
        "{prefix: /x/, base_url: 'http://127.0.0.1:9'}\n")
    result = run_cli("--config", "c.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert "config.cache_dir: 'blocker/cache' is not writable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key, value", [
    ("max_size", "7" * 309), ("min_free", "9" * 400 + "GB"), ("max_stale", "7" * 400),
    ("negative_ttl", 10**400), ("max_stale", float("inf"))])
def test_huge_sizes_and_durations_are_a_config_error_not_a_crash(key, value):
    # Found by tests/hostile.py: float() of hundreds of digits is inf and int(inf) raised
    # OverflowError; a Python int that large overflowed float().
    data = minimal()
    data["cache"] = {key: value}
    assert "too l" in error_of(data) and f"config.cache.{key}" in error_of(data)


@pytest.mark.parametrize("value", ["vault.example", "ftp://vault.example",
                                   "https://u:p@vault.example", "https://vault.example/?x=1", 8080])
def test_a_bad_public_url_names_the_key_and_the_fix(value):
    data = minimal()
    data["public_url"] = value
    assert "config.public_url" in error_of(data) and "https://vault.example.com" in error_of(data)


def test_public_url_loses_its_trailing_slash():
    data = minimal()
    data["public_url"] = "https://vault.example/mirror/"
    assert parse_config(data, env={}).public_url == "https://vault.example/mirror"
