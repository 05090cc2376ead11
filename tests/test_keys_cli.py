"""`petit keys new` and `petit keys list` through the real bin/petit: a fresh key printed once and
kept nowhere but as its SHA-256, appended to the keys file (created mode 0600) or printed to
paste into petit.toml; names already declared, bad names and roles, an unsafe keys file refused;
and the list of keys by name, role and place, never a hash."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib

import pytest
from processes import PETIT, run_petit

from petit.ipc.access import KeyTable, Role, hash_key
from petit.service.config_file import read_config_file
from petit.service.security_config import read_api_keys

pytestmark = pytest.mark.timeout(60)
KEY = re.compile(r"petit_[A-Za-z0-9_-]{43}")
CI_SHA256 = hash_key("the ci key")


def block(name: str, role: str, digest: str) -> str:
    return f'[[api_keys]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{digest}"\n'


def petit(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETIT_")}
    result = run_petit(*args, cwd=str(tmp_path), env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def the_key(result: subprocess.CompletedProcess) -> str:
    """The key, alone on the first line, and nowhere else in the output."""
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[0]
    assert KEY.fullmatch(key), key
    assert result.stdout.count(key) == 1 and key not in result.stderr
    return key


def files_holding(root, text: str) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                if text.encode() in handle.read():
                    found.append(name)
    return found


def accepted(tmp_path, key: str):
    """The key the API would find for `key`, from the keys petit.toml declares now."""
    return KeyTable(read_api_keys(read_config_file(str(tmp_path / "petit.toml")))).match(key)


@pytest.fixture
def with_keys_file(tmp_path):
    (tmp_path / "petit.toml").write_text('max_tasks = 2\napi_keys_file = "keys.toml"\n')
    return tmp_path / "keys.toml"


# -- keys new, with a keys file ----------------------------------------------------------------


def test_a_new_key_goes_to_the_keys_file_as_its_hash_and_is_printed_once(tmp_path, with_keys_file):
    result = petit(tmp_path, "keys", "new", "ci", "--role", "operate")
    key = the_key(result)
    assert result.stdout.splitlines()[1:] == [
        "This key is shown once and kept nowhere: petit stores only its SHA-256. Give it to its "
        "client now.",
        f"Added the key 'ci' (role operate) to {with_keys_file}.",
        "Run `petit ctl reload` to have a running petit accept it.",
    ]
    assert with_keys_file.read_text() == block("ci", "operate", hash_key(key))
    assert stat.S_IMODE(os.stat(with_keys_file).st_mode) == 0o600
    assert files_holding(tmp_path, key) == []  # stored nowhere
    found = accepted(tmp_path, key)
    assert (found.name, found.role, found.where) == ("ci", Role.OPERATE, f"{with_keys_file} line 1")


def test_each_new_key_is_appended_after_the_others(tmp_path, with_keys_file):
    with_keys_file.write_text("# keys of the nightly jobs\n" + block("ops", "admin", CI_SHA256))
    with_keys_file.chmod(0o640)  # others may read hashes; the mode is left as it was
    first = the_key(petit(tmp_path, "keys", "new", "grafana", "--role", "read"))
    with open(with_keys_file, "a") as handle:
        handle.write("# a comment without its newline")
    second = the_key(petit(tmp_path, "keys", "new", "ci-2", "--role", "admin"))
    assert first != second
    assert with_keys_file.read_text() == (
        "# keys of the nightly jobs\n"
        + block("ops", "admin", CI_SHA256)
        + "\n"
        + block("grafana", "read", hash_key(first))
        + "# a comment without its newline\n\n"
        + block("ci-2", "admin", hash_key(second))
    )
    assert stat.S_IMODE(os.stat(with_keys_file).st_mode) == 0o640
    assert accepted(tmp_path, first).name == "grafana"
    assert accepted(tmp_path, second).role is Role.ADMIN


def test_a_name_declared_anywhere_is_refused_and_nothing_is_written(tmp_path, with_keys_file):
    (tmp_path / "petit.toml").write_text(
        'api_keys_file = "keys.toml"\n' + block("ci", "operate", CI_SHA256)
    )
    result = petit(tmp_path, "keys", "new", "ci", "--role", "read")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "petit: NAME: the key name 'ci' is already declared at petit.toml line 2: choose "
        "another, or remove that one first\n"
    )
    assert not with_keys_file.exists()  # not even created
    the_key(petit(tmp_path, "keys", "new", "grafana", "--role", "read"))
    before = with_keys_file.read_text()
    result = petit(tmp_path, "keys", "new", "grafana", "--role", "admin")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"petit: NAME: the key name 'grafana' is already declared at {with_keys_file} line 1: "
        "choose another, or remove that one first\n"
    )
    assert with_keys_file.read_text() == before


@pytest.mark.parametrize(
    ("name", "role", "message"),
    [
        (
            "two words",
            "read",
            "NAME: expected a key name of 1 to 64 letters, digits and _ . @ - (starting with a "
            "letter or digit), got 'two words'",
        ),
        ("api-token", "admin", "NAME: 'api-token' is the name of --api-token: choose another"),
        ("ci", "root", "--role: expected one of read, operate, admin, got 'root'"),
        ("ci", "", "--role: expected one of read, operate, admin, got ''"),
    ],
)
def test_a_bad_name_or_role_is_a_usage_error(tmp_path, with_keys_file, name, role, message):
    result = petit(tmp_path, "keys", "new", name, "--role", role)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"petit: {message}\n")
    assert not with_keys_file.exists()


def test_the_role_is_required(tmp_path):
    result = petit(tmp_path, "keys", "new", "ci")
    assert result.returncode == 2 and result.stderr.startswith("petit: invalid command line")


def test_a_keys_file_others_may_write_is_refused_and_left_alone(tmp_path, with_keys_file):
    with_keys_file.write_text(block("ops", "admin", CI_SHA256))
    with_keys_file.chmod(0o666)
    result = petit(tmp_path, "keys", "new", "ci", "--role", "read")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"petit: petit.toml line 2: api_keys_file: {with_keys_file} may be written by group or "
        f"others (mode 0666), who could add a key of their own: run chmod 600 {with_keys_file}\n"
    )
    assert with_keys_file.read_text() == block("ops", "admin", CI_SHA256)


def test_a_broken_keys_file_is_refused_and_left_alone(tmp_path, with_keys_file):
    with_keys_file.write_text(block("ops", "owner", CI_SHA256))
    with_keys_file.chmod(0o600)
    result = petit(tmp_path, "keys", "new", "ci", "--role", "read")
    assert result.returncode == 2
    assert result.stderr == (
        f"petit: {with_keys_file} line 3: api_keys[0].role: expected one of read, operate, "
        "admin, got 'owner'\n"
    )
    assert with_keys_file.read_text() == block("ops", "owner", CI_SHA256)


def test_a_keys_file_in_a_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    (tmp_path / "petit.toml").write_text('api_keys_file = "secrets/keys.toml"\n')
    result = petit(tmp_path, "keys", "new", "ci", "--role", "read")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"petit: petit.toml line 1: api_keys_file: cannot write {tmp_path}/secrets/keys.toml: "
        "No such file or directory\n"
    )


def test_keys_made_at_once_all_land_and_a_name_once_only(tmp_path, with_keys_file):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETIT_")}

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, PETIT, "keys", "new", name, "--role", "read"],
            cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    procs = [start(name) for name in ("a", "b", "c", "same", "same", "same")]
    outcomes = [(proc.communicate(timeout=30), proc.returncode) for proc in procs]
    codes = [code for _, code in outcomes]
    assert codes[:3] == [0, 0, 0] and sorted(codes[3:]) == [0, 2, 2], outcomes
    keys = read_api_keys(read_config_file(str(tmp_path / "petit.toml")))
    assert sorted(key.name for key in keys) == ["a", "b", "c", "same"]
    for (out, _), code in outcomes:
        if code == 0:
            assert accepted(tmp_path, out.splitlines()[0]) is not None


# -- keys new, without a keys file -------------------------------------------------------------


def pasted(result) -> str:
    """The lines to paste, after the blank line; they declare the printed key."""
    key = the_key(result)
    text = result.stdout.split("\n\n", 1)[1]
    [entry] = tomllib.loads(text)["api_keys"]
    assert entry["sha256"] == hash_key(key)
    return text


def test_without_a_keys_file_the_block_is_printed_to_paste_into_petit_toml(tmp_path):
    (tmp_path / "petit.toml").write_text("max_tasks = 2\n")
    result = petit(tmp_path, "keys", "new", "grafana", "--role", "read")
    assert result.stdout.splitlines()[1:3] == [
        "This key is shown once and kept nowhere: petit stores only its SHA-256. Give it to its "
        "client now.",
        "petit.toml names no api_keys_file: paste these lines into it, then run "
        "`petit ctl reload`:",
    ]
    text = pasted(result)
    assert text.startswith('[[api_keys]]\nname = "grafana"\nrole = "read"\nsha256 = "')
    assert (tmp_path / "petit.toml").read_text() == "max_tasks = 2\n"  # written by hand only
    assert sorted(os.listdir(tmp_path)) == ["petit.toml"]


def test_without_a_petit_toml_the_block_is_printed_too(tmp_path):
    result = petit(tmp_path, "keys", "new", "ci", "--role", "operate")
    assert result.stdout.splitlines()[2] == (
        "There is no petit.toml here (--config PATH names one). Paste these lines into the "
        "petit.toml petit run reads, then start petit run with it:"
    )
    pasted(result)
    assert os.listdir(tmp_path) == []


def test_config_names_the_petit_toml_whose_keys_file_gets_the_key(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "petit.toml").write_text('api_keys_file = "keys.toml"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = petit(
        elsewhere, "--config", str(etc / "petit.toml"), "keys", "new", "ci", "--role", "read"
    )
    key = the_key(result)
    assert (etc / "keys.toml").read_text() == block("ci", "read", hash_key(key))
    assert os.listdir(elsewhere) == []


# -- keys list ---------------------------------------------------------------------------------


def test_list_shows_each_key_with_its_role_and_place_never_a_hash(tmp_path, with_keys_file):
    (tmp_path / "petit.toml").write_text(
        'api_keys_file = "keys.toml"\n\n' + block("grafana", "read", hash_key("g"))
    )
    with_keys_file.write_text(block("ci", "operate", CI_SHA256))
    with_keys_file.chmod(0o600)
    result = petit(tmp_path, "keys", "list")
    assert result.returncode == 0, result.stderr
    assert [" ".join(line.split()) for line in result.stdout.splitlines()] == [
        "NAME ROLE DECLARED AT",
        "grafana read petit.toml line 3",
        f"ci operate {with_keys_file} line 1",
    ]
    listed = petit(tmp_path, "keys", "list", "--json")
    assert json.loads(listed.stdout) == [
        {"name": "grafana", "role": "read", "where": "petit.toml line 3"},
        {"name": "ci", "role": "operate", "where": f"{with_keys_file} line 1"},
    ]
    for out in (result.stdout, listed.stdout):
        assert hash_key("g") not in out and CI_SHA256 not in out


def test_list_says_when_no_key_is_asked_and_when_none_is_left(tmp_path):
    result = petit(tmp_path, "keys", "list")
    assert result.stdout == (
        "No API keys declared (petit.toml has no [[api_keys]] and no api_keys_file): the API "
        "asks for no key, unless petit run is given --api-token.\n"
    )
    assert petit(tmp_path, "keys", "list", "--json").stdout == "[]\n"
    (tmp_path / "petit.toml").write_text("api_keys = []\n")
    assert petit(tmp_path, "keys", "list").stdout == (
        "No API keys left: the API refuses every request, but with --api-token's token.\n"
    )


def test_list_refuses_a_keys_file_that_does_not_exist(tmp_path, with_keys_file):
    result = petit(tmp_path, "keys", "list")
    assert result.returncode == 2
    assert result.stderr == (
        f"petit: petit.toml line 2: api_keys_file: cannot read {with_keys_file}: No such file or "
        "directory (petit keys new NAME --role ROLE creates it)\n"
    )
