"""petit.toml through the real bin/petit: every `petit run` option from the file, under the command
line and the PETIT_* variables (`--print-config` names each source); the other commands finding
the db and the socket through ./petit.toml; the [defaults] filled into the jobs; and every bad
file refused with one line naming the file, the line and the key."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import tomllib

import pytest
from harness import Service
from jobfiles import EXAMPLES, job_yaml, write_job
from processes import MARK, PETIT, ROOT, run_petit
from test_notify import Receiver

from petit.errors import ConfigError
from petit.jobs.defaults import located, with_defaults
from petit.jobs.loader import JOB_KEYS, load_jobs
from petit.service.config_file import key_lines, read_config_file
from petit.service.settings import socket_path


def clean_env(**extra: str) -> dict:
    """The test's environment without the developer's PETIT_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETIT_")}
    return {**env, **extra}


def write(path, text: str) -> str:
    path = str(path)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def print_config(tmp_path, *args: str, env: dict | None = None) -> dict[str, tuple[str, str]]:
    """`petit run JOBS --print-config ARGS` in tmp_path: key -> (value, source)."""
    result = run_petit(
        "run", str(tmp_path / "jobs"), "--print-config", *args, cwd=str(tmp_path), env=env
    )
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        key, value, *source = re.split(r"  +", line)
        rows[key] = (value, source[0] if source else "")
    return rows


@pytest.fixture
def jobs_dir(tmp_path):
    (tmp_path / "jobs").mkdir()
    write_job(tmp_path / "jobs", "tick.yaml", job_yaml("tick", "echo tick"))
    return tmp_path / "jobs"


# -- the line of each key ----------------------------------------------------------------------


def test_each_key_is_found_on_its_line():
    text = "\n".join(
        [
            "# a comment = not a key",  # 1
            'db = "x.db"',  # 2
            'note = """',  # 3
            "max_tasks = 9",  # 4: inside a multi-line string
            '"""',  # 5
            "max_tasks = 2",  # 6
            "[defaults]",  # 7
            'retry.delay = "1s"',  # 8
            "[defaults.environment]",  # 9
            '"QUOTED.NAME" = 1',  # 10
            "[[defaults.notify]]",  # 11
            'url = "http://a"',  # 12
            "[[defaults.notify]]",  # 13
        ]
    )
    assert key_lines(text) == {
        "db": 2,
        "note": 3,
        "max_tasks": 6,
        "defaults": 7,
        "defaults.retry.delay": 8,
        "defaults.environment": 9,
        "defaults.environment.QUOTED.NAME": 10,
        "defaults.notify": 11,
        "defaults.notify.url": 12,
        # each table of an array also under its index, for errors naming the second one
        "defaults.notify[0]": 11,
        "defaults.notify[0].url": 12,
        "defaults.notify[1]": 13,
    }


SQ3, DQ3 = "'" * 3, '"' * 3


@pytest.mark.parametrize(
    "line",
    [
        f'api_host = "a" # {DQ3}',
        f"api_host = 'a' # {SQ3}",
        f"api_host = '{DQ3}'",
        r'api_host = "\"\"\""',
        f'api_host = "{SQ3}"',
        f"api_host = {DQ3}a{DQ3} # {DQ3}",
        f'api_host = {DQ3}a{DQ3}""',
        f"api_host = {SQ3}a{SQ3}''",
        f'api_host = ["a", {DQ3}b{DQ3}, {SQ3}c{SQ3}] # {DQ3}',
    ],
    ids=[
        "comment",
        "literal-comment",
        "in-literal",
        "escaped",
        "in-basic",
        "closed",
        "quotes-end-it",
        "literal-quotes-end-it",
        "array",
    ],
)
def test_triple_quotes_inside_a_string_or_a_comment_open_no_string(line):
    text = f'{line}\nmax_tasks = 2\n[defaults]\ntimeout = "1s"\n'
    tomllib.loads(text)  # valid TOML, each of them
    assert key_lines(text) == {"api_host": 1, "max_tasks": 2, "defaults": 3, "defaults.timeout": 4}


def test_a_multi_line_string_closed_mid_line_hides_only_its_own_lines():
    text = "\n".join(
        [
            f"note = {DQ3}one",  # 1
            "max_tasks = 9",  # 2: inside the string
            f"two{DQ3} # {DQ3}",  # 3: closed, then a comment
            "max_tasks = 2",  # 4
            f"x = {SQ3}",  # 5
            DQ3,  # 6: inside the literal string, closes nothing
            SQ3,  # 7
            'db = "d"',  # 8
        ]
    )
    assert key_lines(text) == {"note": 1, "max_tasks": 4, "x": 5, "db": 8}


def test_a_key_without_a_line_is_placed_on_its_table(tmp_path):
    config = read_config_file(write(tmp_path / "p.toml", "[defaults]\nretry = {delay = 'x'}\n"))
    assert config.where("defaults.retry.delay") == f"{tmp_path}/p.toml line 2"
    assert config.where("defaults.nothing") == f"{tmp_path}/p.toml line 1"


# -- precedence and sources --------------------------------------------------------------------


def test_print_config_names_the_source_of_every_value(tmp_path, jobs_dir):
    os.mkdir(tmp_path / "data")
    write(tmp_path / "token", "s3cret-from-file\n")
    os.chmod(tmp_path / "token", 0o600)
    write(
        tmp_path / "petit.toml",
        "\n".join(
            [
                'db = "data/p.db"',  # relative: to the file's folder
                "api_port = 9001",  # the environment wins over it
                "max_tasks = 2",
                "max_jobs = 1",  # the command line wins over the environment and it
                'api_token_file = "token"',
                "[defaults]",
                'retry = {max_attempts = 2, delay = "1s"}',
            ]
        ),
    )
    env = clean_env(PETIT_API_PORT="9002", PETIT_MAX_JOBS="3")
    rows = print_config(tmp_path, "--max-jobs", "5", "--keep-runs", "7", env=env)
    assert rows["jobs_dir"] == (str(jobs_dir), "cli")
    assert rows["db"] == (str(tmp_path / "data" / "p.db"), "petit.toml line 1")
    assert rows["socket"] == (str(tmp_path / "data" / "p.db.sock"), "default (<db>.sock)")
    assert rows["api_port"] == ("9002", "env PETIT_API_PORT")
    assert rows["max_tasks"] == ("2", "petit.toml line 3")
    assert rows["max_jobs"] == ("5", "cli")
    assert rows["keep_runs"] == ("7", "cli")
    assert rows["log_level"] == ("info", "default")
    assert rows["api_token"][0].startswith("(set, from file")
    assert rows["defaults.retry"] == ('{"max_attempts": 2, "delay": "1s"}', "petit.toml line 7")
    # the token from the environment wins over the file, and neither is ever printed
    env["PETIT_API_TOKEN"] = "s3cret-from-env"
    result = run_petit(
        "run", str(jobs_dir), "--print-config", cwd=str(tmp_path), env=env, timeout=30
    )
    assert re.search(r"^api_token +\(set, from env PETIT_API_TOKEN\)$", result.stdout, re.M)
    assert "s3cret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "argv, env, socket, source",
    [
        (["--db", "cli.db"], {}, "cli.db.sock", "the db's cli outranks petit.toml line 1"),
        ([], {"PETIT_DB": "env.db"}, "env.db.sock", "the db's env PETIT_DB outranks petit"),
        (["--socket", "cli.sock"], {"PETIT_DB": "env.db"}, "cli.sock", "cli"),
        ([], {"PETIT_SOCKET": "env.sock"}, "env.sock", "env PETIT_SOCKET"),
        ([], {}, "file.sock", "petit.toml line 1"),
    ],
    ids=["cli-db", "env-db", "cli-socket", "env-socket", "file-socket"],
)
def test_a_db_given_above_the_files_socket_brings_its_own_socket(
    tmp_path, jobs_dir, monkeypatch, argv, env, socket, source
):
    write(tmp_path / "petit.toml", 'socket = "file.sock"\n')
    rows = print_config(tmp_path, *argv, env=clean_env(**env))
    assert rows["socket"][0] == str(tmp_path / socket)
    assert source in rows["socket"][1], rows["socket"]
    # petit ctl finds the same socket as petit run
    monkeypatch.chdir(tmp_path)
    assert socket_path(parsed_args(tmp_path, argv), env) == str(tmp_path / socket)


def parsed_args(tmp_path, argv: list[str]) -> dict:
    """docopt's arguments for `petit --config TMP/petit.toml ctl status` with `argv` before."""
    from docopt import docopt

    from petit.cli.main import usage

    return docopt(usage(), ["--config", str(tmp_path / "petit.toml"), *argv, "ctl", "status"])


def test_a_tilde_in_a_path_of_the_file_is_the_home_folder(tmp_path, jobs_dir):
    home = tmp_path / "home"
    home.mkdir()
    write(home / "token", "t0ken\n")
    os.chmod(home / "token", 0o600)
    write(
        tmp_path / "petit.toml",
        'db = "~/p.db"\nsocket = "~/p.sock"\napi_token_file = "~/token"\n',
    )
    rows = print_config(tmp_path, env=clean_env(HOME=str(home)))
    assert rows["db"] == (str(home / "p.db"), "petit.toml line 1")
    assert rows["socket"] == (str(home / "p.sock"), "petit.toml line 2")
    assert rows["api_token_file"] == (str(home / "token"), "petit.toml line 3")
    assert rows["api_token"][0].startswith("(set, from file")


LONG_SOCKET = "/tmp/" + "s" * 110 + ".sock"


@pytest.mark.parametrize(
    "toml, argv, env, error",
    [
        (
            f'api = false\nsocket = "{LONG_SOCKET}"\n',
            [],
            {},
            "petit.toml line 2: socket: control socket path is 120 bytes, over the 107-byte limit",
        ),
        (
            "api = false\n",
            ["--db", "d" * 110 + ".db"],
            {},
            "--db (the control socket is <db>.sock unless --socket is given): control socket path",
        ),
        (
            'api_host = "nosuchhost.invalid"\n',
            ["--socket", "SOCKETS/s"],
            {},
            "petit.toml line 1: api_host: 'nosuchhost.invalid' cannot be resolved: ",
        ),
        (
            "",
            ["--socket", "SOCKETS/s"],
            {"PETIT_API_PORT": "BUSY"},
            "PETIT_API_PORT: cannot listen on 127.0.0.1:BUSY: ",
        ),
        (
            "\n\n# busy by default\n",
            ["--socket", "SOCKETS/s", "--api-port", "BUSY"],
            {},
            "--api-port: cannot listen on 127.0.0.1:BUSY: ",
        ),
        (
            'api = false\nsocket = "SOCKETS/s"\ndb = "nodir/p.db"\n',
            [],
            {},
            "petit.toml line 3: db: TMP/nodir/p.db: the directory TMP/nodir does not exist",
        ),
        (
            'api = false\nsocket = "SOCKETS/file"\n',
            [],
            {},
            "petit.toml line 2: socket: SOCKETS/file exists and is not a socket: choose another",
        ),
    ],
    ids=[
        "socket-too-long",
        "db-too-long",
        "host",
        "port-env",
        "port-cli",
        "db-folder",
        "not-socket",
    ],
)
def test_a_start_up_check_names_where_the_value_came_from(
    tmp_path, jobs_dir, sockets_dir, toml, argv, env, error
):
    import socket as sockets

    with sockets.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        write(os.path.join(sockets_dir, "file"), "not a socket\n")

        def filled(text: str) -> str:
            text = text.replace("SOCKETS", sockets_dir).replace("BUSY", port)
            return text.replace("TMP", str(tmp_path))

        write(tmp_path / "petit.toml", filled(toml))
        result = run_petit(
            "run",
            str(jobs_dir),
            *map(filled, argv),
            cwd=str(tmp_path),
            env=clean_env(**{key: filled(value) for key, value in env.items()}),
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "petit[" not in line]
    assert lines == [lines[0]] and lines[0].startswith(f"petit: {filled(error)}"), result.stderr
    assert not os.path.exists(LONG_SOCKET)


# -- the service and the other commands through ./petit.toml -----------------------------------


FLAKY = """
id: flaky
name: fails once, then passes if the default environment reached it
tasks:
  - id: t
    type: shell
    script: |
      if [ ! -e "{spot}/failed-once" ]; then touch "{spot}/failed-once"; exit 1; fi
      test "$GREETING" = "from-defaults"
"""
OWN = """
id: own
name: its own retry and environment win over the defaults
environment: {GREETING: mine}
tasks:
  - id: t
    type: shell
    retry: {max_attempts: 0}
    script: '[ "$GREETING" = mine ] || exit 9; exit 3'
"""
SERIAL = """
id: serial
name: two tasks that fail if they ever run at once
tasks:
  - id: a
    type: shell
    script: 'mkdir "{spot}/busy" || exit 7; sleep 0.3; rmdir "{spot}/busy"'
  - id: b
    type: shell
    script: 'mkdir "{spot}/busy" || exit 7; sleep 0.3; rmdir "{spot}/busy"'
"""


def test_the_service_and_its_clients_take_everything_from_petit_toml(
    tmp_path, sockets_dir, monkeypatch
):
    spot = str(tmp_path)
    jobs = {
        "flaky": FLAKY.format(spot=spot),
        "own": OWN,
        "serial": SERIAL.format(spot=spot),
        "tick": job_yaml("tick", "echo tick"),
    }
    service = TomlService(str(tmp_path / "svc"), jobs, socket=os.path.join(sockets_dir, "s"))
    write(
        tmp_path / "petit.toml",
        "\n".join(
            [
                'db = "data/petit.db"',
                f'socket = "{service.socket}"',
                f"api_port = {service.port}",
                "max_tasks = 1",
                "keep_runs = 2",
                "shutdown_timeout = 3",
                "[defaults]",
                "retry = {max_attempts = 1}",
                "environment = {GREETING = 'from-defaults'}",
            ]
        ),
    )
    os.mkdir(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # petit run, ctl and runs all read ./petit.toml
    with service.running():
        assert os.path.isfile(tmp_path / "data" / "petit.db")
        assert service.get("/api/health").status == 200  # on the port the file names
        status = run_petit("ctl", "status", "--json", cwd=str(tmp_path), env=clean_env())
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["scheduler"]["jobs"] == 4

        flaky = service.wait_run(service.trigger("flaky"))
        assert flaky["status"] == "completed", flaky
        assert task_of(service, flaky["id"])["attempts"] == 2  # the default retry
        own = service.wait_run(service.trigger("own"))
        assert (task_of(service, own["id"])["attempts"], own["status"]) == (1, "failed")
        assert task_of(service, own["id"])["exit_code"] == 3  # its own GREETING, not 9
        serial = service.wait_run(service.trigger("serial"))
        assert serial["status"] == "completed", serial  # max_tasks = 1: never both at once

        reload = run_petit("ctl", "reload", cwd=str(tmp_path), env=clean_env())
        assert reload.returncode == 0, reload.stderr
        # a reload reads the jobs again with the [defaults] read at start
        retry = service.get("/api/jobs/flaky").json()["tasks"][0]["retry"]
        assert retry["max_attempts"] == 1, retry

        for _ in range(3):
            service.wait_run(service.trigger("tick"))
        runs = run_petit("runs", "tick", "--json", cwd=str(tmp_path), env=clean_env())
        assert runs.returncode == 0, runs.stderr
        assert len(json.loads(runs.stdout)["runs"]) == 2  # keep_runs = 2


class TomlService(Service):
    """`petit run JOBS_DIR` and nothing else on its command line: the rest is in ./petit.toml."""

    def __init__(self, root: str, jobs: dict[str, str], socket: str) -> None:
        db = os.path.join(os.path.dirname(root), "data", "petit.db")
        super().__init__(root, jobs=jobs, socket=socket, db=db)

    @property
    def argv(self) -> list[str]:
        return [sys.executable, PETIT, "run", self.jobs_dir]


def task_of(service: Service, run_id: str, task_id: str = "t") -> dict:
    tasks = service.get(f"/api/runs/{run_id}/tasks").json()["tasks"]
    return next(task for task in tasks if task["task_id"] == task_id)


def test_trigger_validate_and_list_see_the_defaults_too(tmp_path):
    (tmp_path / "jobs").mkdir()
    write_job(tmp_path / "jobs", "flaky.yaml", FLAKY.format(spot=tmp_path))
    write(
        tmp_path / "petit.toml",
        'db = "t.db"\n[defaults]\nretry = {max_attempts = 1}\n'
        'environment = {GREETING = "from-defaults"}\n',
    )
    validated = run_petit("validate", "jobs", cwd=str(tmp_path), env=clean_env())
    assert validated.stdout.endswith("1 job(s) valid in jobs, with the [defaults] of petit.toml\n")
    listed = run_petit("list", "jobs", "--json", cwd=str(tmp_path), env=clean_env())
    assert json.loads(listed.stdout)[0]["tasks"][0]["retry"]["max_attempts"] == 1
    result = run_petit("trigger", "jobs", "flaky", cwd=str(tmp_path), env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "start attempt 2" in result.stdout
    assert os.path.isfile(tmp_path / "t.db")  # the db petit.toml names


# -- applying the defaults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, expected",
    [
        ({"id": "t"}, {"id": "t", "retry": {"max_attempts": 2}, "timeout": "1m"}),
        ({"id": "t", "retry": None}, {"id": "t", "retry": None, "timeout": "1m"}),
        (
            {"id": "t", "timeout_secs": 5},
            {"id": "t", "retry": {"max_attempts": 2}, "timeout_secs": 5},
        ),
    ],
    ids=["filled-in", "retry-null-says-none", "own-timeout-wins"],
)
def test_a_task_takes_what_it_leaves_out(task, expected):
    table = {"retry": {"max_attempts": 2}, "timeout": "1m"}
    filled = with_defaults({"id": "j", "tasks": [task]}, table)
    assert filled["tasks"] == [expected]
    assert filled["tasks"][0].get("retry") is not table["retry"]  # a copy per task


def test_the_environment_is_merged_under_the_jobs_own():
    table = {"environment": {"A": "default", "B": "default"}}
    assert with_defaults({"environment": {"B": "mine"}}, table)["environment"] == {
        "A": "default",
        "B": "mine",
    }
    assert with_defaults({}, table)["environment"] == {"A": "default", "B": "default"}


@pytest.mark.skipif("notify" not in JOB_KEYS, reason="the notify job key comes with the hooks")
def test_notify_defaults_reach_a_job_without_its_own(tmp_path):
    (tmp_path / "jobs").mkdir()
    write_job(tmp_path / "jobs", "a.yaml", job_yaml("a", "true"))
    write_job(tmp_path / "jobs", "b.yaml", job_yaml("b", "true", extra="notify: []\n"))
    config = read_config_file(
        write(tmp_path / "p.toml", '[defaults]\nnotify = [{url = "http://127.0.0.1:9/hook"}]\n')
    )
    jobs = load_jobs(str(tmp_path / "jobs"), config)
    assert len(jobs["a"].notify) == 1 and jobs["b"].notify == ()


# -- bad files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, code, error",
    [
        ("db = 'x.db'\nmax_tasks = \n", 2, "petit.toml line 2: invalid TOML: Invalid value"),
        (
            "max_task = 3\n",
            2,
            "petit.toml line 1: unknown key 'max_task' (did you mean 'max_tasks'?): expected",
        ),
        ("\napi_port = '80'\n", 2, "petit.toml line 2: api_port: expected an integer, got string"),
        ("api = 1\n", 2, "petit.toml line 1: api: expected true or false, got integer 1"),
        ("keep_runs = 0\n", 2, "petit.toml line 1: keep_runs must be at least 1, got 0"),
        ("log_level = 'loud'\n", 2, "petit.toml line 1: log_level must be one of debug, info"),
        (
            "[defaults]\nretry.max_attempts = 500\n",
            1,
            "petit.toml line 2: defaults.retry.max_attempts: expected an integer from 0 to 100",
        ),
        (
            "[defaults]\nretries = 3\n",
            1,
            "petit.toml line 2: defaults.retries: unknown key (did you mean 'retry'?)",
        ),
        ("api_token = 's3cret'\n", 2, "petit.toml line 1: unknown key 'api_token' (did you mean"),
    ],
    ids=[
        "syntax",
        "unknown",
        "type",
        "bool",
        "range",
        "choice",
        "defaults-value",
        "defaults-key",
        "token-in-file",
    ],
)
def test_a_bad_file_is_one_clear_line(tmp_path, jobs_dir, sockets_dir, marker, text, code, error):
    write(tmp_path / "petit.toml", text)
    result = run_petit(
        "run",
        str(jobs_dir),
        "--no-api",
        "--socket",
        os.path.join(sockets_dir, "s"),
        cwd=str(tmp_path),
        env=clean_env(**{MARK: marker}),
        timeout=30,
    )
    assert result.returncode == code, result.stderr
    assert error in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "petit[" not in line]
    # a usage error is one line; a [defaults] problem is listed like a job file's, with a count
    # that names the file it is in
    assert lines[1:] == ([] if code == 2 else ["1 error(s) in petit.toml"]), result.stderr


@pytest.mark.parametrize(
    "contents, mode, error",
    [
        ("t0ken\n", 0o644, "may be read or written by group or others (mode 0644): run chmod 600"),
        ("t0ken\n", 0o620, "may be read or written by group or others (mode 0620)"),
        ("\n", 0o600, "is empty: write the token in it"),
        (b"t0ken\xff\n", 0o600, "is not UTF-8 text (byte 5)"),
        ("t0k\u00e9n\n", 0o600, "holds characters a token cannot have: only visible ASCII"),
        ("t0 ken\n", 0o600, "holds characters a token cannot have"),
        ("t0ken\x07\n", 0o600, "holds characters a token cannot have"),
        ("t0ken\nmore\n", 0o600, "should hold the token alone, on one line"),
    ],
    ids=[
        "readable",
        "group-writable",
        "empty",
        "not-utf8",
        "not-ascii",
        "space",
        "control",
        "lines",
    ],
)
def test_a_token_file_others_may_read_is_refused(tmp_path, jobs_dir, contents, mode, error):
    with open(tmp_path / "token", "wb") as handle:
        handle.write(contents if isinstance(contents, bytes) else contents.encode())
    os.chmod(tmp_path / "token", mode)
    write(tmp_path / "petit.toml", "\n\napi_token_file = 'token'\n")
    result = run_petit(
        "run", str(jobs_dir), "--print-config", cwd=str(tmp_path), env=clean_env(), timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.startswith("petit: petit.toml line 3: api_token_file: ")
    assert error in result.stderr and "t0k" not in result.stderr + result.stdout
    assert len(result.stderr.splitlines()) == 1
    assert stat.S_IMODE(os.stat(tmp_path / "token").st_mode) == mode  # never changed for you


def test_the_count_of_errors_names_the_files_they_are_in(tmp_path, jobs_dir):
    write(tmp_path / "p.toml", "[defaults]\ntimeout = 'soon'\n")
    result = run_petit("--config", "p.toml", "validate", "jobs", cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "1 error(s) in p.toml", result.stderr
    write_job(jobs_dir, "bad.yaml", "id: bad\n")
    result = run_petit("--config", "p.toml", "validate", "jobs", cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "3 error(s) in jobs", result.stderr
    # the help says what the docs say: [defaults] problems are like a job file's, exit 1
    help_text = " ".join(run_petit("--help").stdout.split())
    assert "1 failure (invalid jobs or petit.toml [defaults]," in help_text
    assert "2 bad usage (or a bad setting in petit.toml)" in help_text


class FakeDefaults:
    path = "petit.toml"
    defaults = {"timeout": "1s", "notify": []}

    def where(self, key: str) -> str:
        return {"defaults.notify": "petit.toml line 3"}.get(key, "petit.toml line 1")


@pytest.mark.parametrize(
    "message, line",
    [
        (
            "unknown key 'notify' in a job: expected one of id, name",
            "petit.toml line 3: defaults.notify: unknown key in a job: expected one of id, name",
        ),
        (
            "notify: expected a list, got 'x'",
            "petit.toml line 3: defaults.notify: expected a list, got 'x'",
        ),
        (
            "unknown key 'other' in a job: x",
            "petit.toml line 1: defaults: unknown key 'other' in a job: x",
        ),
    ],
    ids=["unknown-to-the-job-parser", "a-bad-value", "not-in-the-defaults"],
)
def test_a_problem_of_the_defaults_is_put_on_the_line_of_its_key(message, line):
    assert located(FakeDefaults(), message) == line


def test_a_missing_config_path_is_an_error_but_no_petit_toml_is_not(tmp_path, jobs_dir):
    result = run_petit("--config", "nope.toml", "validate", "jobs", cwd=str(tmp_path))
    assert (result.returncode, result.stderr) == (2, "petit: --config nope.toml: no such file\n")
    assert run_petit("validate", "jobs", cwd=str(tmp_path), env=clean_env()).returncode == 0


def test_the_example_file_is_the_one_the_docs_show_and_it_works():
    with open(os.path.join(ROOT, "examples", "petit.toml")) as handle:
        example = handle.read()
    with open(os.path.join(ROOT, "docs", "service.md")) as handle:
        docs = handle.read()
    assert f"```toml\n{example}```" in docs
    result = run_petit(
        "--config",
        os.path.join(ROOT, "examples", "petit.toml"),
        "run",
        EXAMPLES,
        "--print-config",
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "examples/petit.toml line 41" in result.stdout  # [defaults] environment
    assert "examples/petit.toml line 32" in result.stdout  # [audit] max_size


def test_a_default_timeout_is_checked_once_and_fills_each_task_without_one(tmp_path):
    (tmp_path / "jobs").mkdir()
    write_job(tmp_path / "jobs", "a.yaml", job_yaml("a", "true"))
    write_job(
        tmp_path / "jobs",
        "b.yaml",
        job_yaml("b", "true").replace("    type:", "    timeout: 5s\n    type:"),
    )
    good = read_config_file(write(tmp_path / "good.toml", "[defaults]\ntimeout = '10m'\n"))
    jobs = load_jobs(str(tmp_path / "jobs"), good)
    assert (jobs["a"].tasks[0].timeout_secs, jobs["b"].tasks[0].timeout_secs) == (600, 5)
    bad = read_config_file(write(tmp_path / "bad.toml", "\n[defaults]\ntimeout = '10x'\n"))
    with pytest.raises(ConfigError) as caught:
        load_jobs(str(tmp_path / "jobs"), bad)
    (error,) = caught.value.errors  # once, not once per job
    assert error.startswith(
        f"{tmp_path}/bad.toml line 3: defaults.timeout: invalid duration '10x': '10x' is not "
        "a number with a unit"
    )


def test_the_api_asks_for_the_token_of_the_token_file(service, tmp_path):
    token = "t0ken-" + os.urandom(8).hex()
    write(tmp_path / "token", token + "\n")
    os.chmod(tmp_path / "token", 0o600)
    config = write(tmp_path / "petit.toml", "api_token_file = 'token'\n")
    running = service({"tick": job_yaml("tick", "echo tick")}, "--config", config, api=True)
    assert running.get("/api/jobs").status == 401
    authorized = running.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
    assert authorized.status == 200
    assert token not in running.log()


# -- [defaults] notify and timeout through petit trigger -----------------------------------------


@pytest.fixture
def receiver():
    up = Receiver({})
    yield up
    up.close()


def test_trigger_calls_the_default_webhook_and_kills_at_the_default_timeout(
    tmp_path, marker, receiver
):
    up = receiver
    (tmp_path / "jobs").mkdir()
    write_job(tmp_path / "jobs", "slow.yaml", job_yaml("slow", "sleep 30"))
    write(
        tmp_path / "petit.toml",
        "\n".join(
            [
                'db = "t.db"',
                "[defaults]",
                'timeout = "0.5s"',
                "[[defaults.notify]]",
                f'url = "{up.url}/hook"',
                'on = ["failure"]',
            ]
        ),
    )
    result = run_petit(
        "trigger", "jobs", "slow", cwd=str(tmp_path), env=clean_env(**{MARK: marker})
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"== notify {up.url}/hook: delivered (1 attempt(s))" in result.stdout, result.stdout
    ((path, _, body),) = up.requests
    assert (path, body["job_id"], body["status"]) == ("/hook", "slow", "failed")
    shown = json.loads(run_petit("show", "slow-1", "--json", cwd=str(tmp_path)).stdout)
    (task,) = shown["tasks"]
    assert task["timed_out"] and task["status"] == "failed", task
    assert task["ended_at"] - task["started_at"] >= 450  # killed at 0.5 s, not after 30 s


# -- logs, show and watch find the db and the socket through ./petit.toml -------------------------


def test_logs_show_and_watch_find_the_db_and_socket_through_petit_toml(service, tmp_path):
    svc = service({"tick": job_yaml("tick", "echo tick")})  # --no-api
    write(tmp_path / "petit.toml", f'db = "{svc.db}"\nsocket = "{svc.socket}"\n')
    env = clean_env()
    run_id = svc.call("trigger", "tick")["run_id"]
    svc.wait_run(run_id)
    logs = run_petit("logs", run_id, "t", cwd=str(tmp_path), env=env)
    assert (logs.returncode, logs.stdout.strip()) == (0, "tick"), logs
    shown = run_petit("show", run_id, "--json", cwd=str(tmp_path), env=env)
    assert json.loads(shown.stdout)["status"] == "completed", shown
    watcher = subprocess.Popen(
        [sys.executable, PETIT, "watch", "tick"],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    svc.remember(watcher.pid)
    try:
        assert watcher.stderr.readline() == f"petit: watching {svc.socket} (Ctrl-C to stop)\n"
        second = svc.call("trigger", "tick")["run_id"]
        first_event = watcher.stdout.readline()
        assert first_event.split("  ", 1)[1] == f"run {second} pending (manual)\n", first_event
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0
