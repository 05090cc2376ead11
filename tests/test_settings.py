"""Settings for `petit run`: built once from the command line and the environment, defaults
declared in one place, what the user typed wins, bad values are one clear UsageError, and the
frozen result crosses a spawn whole."""

from __future__ import annotations

import dataclasses
import os
import pickle

import pytest
from docopt import docopt

from petit.cli.main import usage
from petit.errors import UsageError
from petit.service.settings import OPTIONS, Inputs, Settings, db_path, read_token_file


def parsed(*argv: str) -> dict:
    return docopt(usage(), argv=list(argv))


def settings(*argv: str, environ: dict | None = None) -> Settings:
    return Settings.from_command_line(parsed("run", "jobs", *argv), environ or {})


def test_defaults_come_from_settings_not_from_the_usage_text():
    built = settings()
    assert built == Settings(
        jobs_dir=os.path.abspath("jobs"),
        db=os.path.abspath("petit.db"),
        socket=os.path.abspath("petit.db") + ".sock",
    )
    assert (built.max_tasks, built.max_jobs, built.keep_runs) == (4, 0, 200)
    assert (built.shutdown_timeout, built.log_level) == (30.0, "info")
    assert (built.api, built.api_host, built.api_port, built.api_token) == (
        True,
        "127.0.0.1",
        8565,
        None,
    )
    # docopt leaves what was not typed as None: nothing hides behind a usage-text default
    args = parsed("run", "jobs")
    for option in ("--max-tasks", "--keep-runs", "--api-port", "--shutdown-timeout", "--socket"):
        assert args[option] is None, option
    assert "default 8565" in usage()


def test_what_the_user_typed_wins():
    built = settings(
        "--db",
        "/srv/p.db",
        "--no-api",
        "--api-port",
        "9000",
        "--api-host",
        "::1",
        "--max-jobs",
        "3",
        "--max-tasks",
        "2",
        "--keep-runs",
        "7",
        "--socket",
        "/tmp/p.sock",
        "--shutdown-timeout",
        "1.5",
        "--log-level",
        "debug",
        "--api-token",
        "typed",
        environ={"PETIT_API_TOKEN": "from-env"},
    )
    assert (built.db, built.socket, built.api, built.api_port, built.api_host) == (
        "/srv/p.db",
        "/tmp/p.sock",
        False,
        9000,
        "::1",
    )
    assert (built.max_jobs, built.max_tasks, built.keep_runs) == (3, 2, 7)
    assert (built.shutdown_timeout, built.log_level, built.api_token) == (1.5, "debug", "typed")
    assert settings("--db", "/srv/p.db").socket == "/srv/p.db.sock"


def test_the_token_comes_from_the_environment_when_not_typed():
    assert settings(environ={"PETIT_API_TOKEN": "s3cret"}).api_token == "s3cret"
    assert settings(environ={"PETIT_API_TOKEN": ""}).api_token is None


@pytest.mark.parametrize(
    "argv, error",
    [
        (
            ["--log-level", "loud"],
            "--log-level must be one of debug, info, warning, error, got 'loud'",
        ),
        (["--api-port", "http"], "--api-port expects a whole number, got 'http'"),
        (["--api-port", "0"], "--api-port must be at least 1, got 0"),
        (["--api-port", "70000"], "--api-port must be at most 65535, got 70000"),
        (["--max-tasks", "0"], "--max-tasks must be at least 1, got 0"),
        (["--max-jobs", "-1"], "--max-jobs must be at least 0, got -1"),
        (["--keep-runs", "many"], "--keep-runs expects a whole number, got 'many'"),
        (
            ["--shutdown-timeout", "soon"],
            "--shutdown-timeout expects a number of seconds, got 'soon'",
        ),
        (
            ["--shutdown-timeout", "1e9"],
            "--shutdown-timeout must be between 0 and 86400 seconds, got 1e9",
        ),
    ],
    ids=[
        "log-level",
        "port-word",
        "port-zero",
        "port-high",
        "max-tasks",
        "max-jobs",
        "keep-runs",
        "timeout-word",
        "timeout-high",
    ],
)
def test_bad_values_are_one_clear_usage_error(argv, error):
    with pytest.raises(UsageError) as caught:
        settings(*argv)
    assert str(caught.value) == error
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "given, origin",
    [
        ("https://petit.example.com", "https://petit.example.com"),
        ("HTTPS://Petit.Example.COM/", "https://petit.example.com"),  # as a browser sends Origin
        ("https://petit.example.com:443", "https://petit.example.com"),  # the default port
        ("http://petit.example.com:8080", "http://petit.example.com:8080"),
        ("http://10.1.2.3:8565", "http://10.1.2.3:8565"),
        ("http://[::1]:8565", "http://[::1]:8565"),
    ],
)
def test_public_url_is_kept_as_the_origin_a_browser_sends(given, origin):
    assert settings("--public-url", given).public_url == origin
    assert settings(environ={"PETIT_PUBLIC_URL": given}).public_url == origin
    assert settings().public_url is None


@pytest.mark.parametrize(
    "given, reason",
    [
        ("petit.example.com", "the scheme must be http or https"),
        ("ftp://petit.example.com", "the scheme must be http or https"),
        ("https://petit.example.com/petit", "an origin has no path, query or fragment"),
        ("https://petit.example.com?x=1", "an origin has no path, query or fragment"),
        ("https://petit.example.com#top", "an origin has no path, query or fragment"),
        ("https://me:pw@petit.example.com", "no user or password may be given"),
        ("https://", "a host name is needed"),
        ("https://pe tit.example.com", "a host name is needed"),
        ("https://petit.example.com:99999", "Port out of range"),
        ("https://petit.example.com:http", "Port could not be cast"),
    ],
)
def test_a_bad_public_url_is_one_clear_usage_error(given, reason):
    with pytest.raises(UsageError) as caught:
        settings("--public-url", given)
    message = str(caught.value)
    assert message.startswith("--public-url must be an origin like https://petit.example.com")
    assert repr(given) in message and reason in message, message
    assert caught.value.exit_code == 2


def test_settings_are_frozen_and_cross_a_process_whole():
    built = settings("--api-token", "t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.api_port = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(built)) == built


def test_one_shot_trigger_options_default_from_settings_too():
    inputs = Inputs(parsed("trigger", "jobs", "hello"), {})
    assert inputs.value("max_tasks") == (4, "default")
    assert inputs.value("keep_runs") == (200, "default")
    assert db_path(parsed("trigger", "jobs", "hello"), {}) == os.path.abspath("./petit.db")
    typed = parsed("trigger", "jobs", "hello", "--max-tasks", "9", "--db", "/tmp/x.db")
    assert Inputs(typed, {}).value("max_tasks") == (9, "cli")
    assert db_path(typed, {}) == "/tmp/x.db"


# variable, its value, the field, the value it gives; a flag typed too, and the value that wins
VARIABLES_AND_FLAGS = [
    ("PETIT_DB", "/srv/env.db", "db", "/srv/env.db", ["--db", "/srv/cli.db"], "/srv/cli.db"),
    (
        "PETIT_SOCKET",
        "/tmp/env.sock",
        "socket",
        "/tmp/env.sock",
        ["--socket", "/tmp/cli.sock"],
        "/tmp/cli.sock",
    ),
    ("PETIT_API", "true", "api", True, ["--no-api"], False),
    ("PETIT_API_HOST", "::1", "api_host", "::1", ["--api-host", "0.0.0.0"], "0.0.0.0"),
    ("PETIT_API_PORT", "9100", "api_port", 9100, ["--api-port", "9200"], 9200),
    ("PETIT_API_TOKEN", "env-t", "api_token", "env-t", ["--api-token", "cli-t"], "cli-t"),
    (
        "PETIT_PUBLIC_URL",
        "https://env.example.com",
        "public_url",
        "https://env.example.com",
        ["--public-url", "https://cli.example.com"],
        "https://cli.example.com",
    ),
    ("PETIT_MAX_JOBS", "3", "max_jobs", 3, ["--max-jobs", "5"], 5),
    ("PETIT_MAX_TASKS", "2", "max_tasks", 2, ["--max-tasks", "6"], 6),
    ("PETIT_KEEP_RUNS", "9", "keep_runs", 9, ["--keep-runs", "11"], 11),
    ("PETIT_SHUTDOWN_TIMEOUT", "1.5", "shutdown_timeout", 1.5, ["--shutdown-timeout", "4"], 4),
    ("PETIT_LOG_LEVEL", "debug", "log_level", "debug", ["--log-level", "error"], "error"),
]


@pytest.mark.parametrize(
    "variable, value, field, expected, typed, typed_value",
    VARIABLES_AND_FLAGS,
    ids=lambda value: value if isinstance(value, str) and value.startswith("PETIT_") else "",
)
def test_each_option_has_its_variable_under_the_command_line(
    variable, value, field, expected, typed, typed_value
):
    built = settings(environ={variable: value})
    assert (getattr(built, field), built.sources[field]) == (expected, f"env {variable}")
    assert settings(environ={variable: ""}).sources[field].startswith("default")
    both = settings(*typed, environ={variable: value})
    assert (getattr(both, field), both.sources[field]) == (typed_value, "cli")


def test_every_option_is_in_the_table_of_variables_and_flags():
    """The test above covers every option but the token file (read, so tested on its own)."""
    assert set(OPTIONS) - {row[2] for row in VARIABLES_AND_FLAGS} == {"api_token_file"}


@pytest.mark.parametrize(
    "variable, value, error",
    [
        ("PETIT_MAX_TASKS", "0", "PETIT_MAX_TASKS must be at least 1, got 0"),
        ("PETIT_API_PORT", "http", "PETIT_API_PORT expects a whole number, got 'http'"),
        ("PETIT_API", "maybe", "PETIT_API must be true or false, got 'maybe'"),
    ],
)
def test_a_bad_variable_is_named_like_an_option(variable, value, error):
    with pytest.raises(UsageError) as caught:
        settings(environ={variable: value})
    assert str(caught.value) == error


def test_the_token_is_never_in_the_repr_of_settings():
    assert "s3cret" not in repr(settings("--api-token", "s3cret"))


@pytest.mark.parametrize("contents", ["t0ken", "t0ken\n", "t0ken\r\n", "  t0ken \t\n\n"])
def test_the_whitespace_around_a_token_in_its_file_is_dropped(tmp_path, contents):
    path = tmp_path / "token"
    path.write_text(contents)
    path.chmod(0o600)
    assert read_token_file(str(path), "--api-token-file") == "t0ken"
