"""petit.toml's keys and audit settings (petit/service/security_config.py): `[[api_keys]]` in
petit.toml and in the keys file `api_keys_file` names, each bad value one exact message naming
the file, the line and the field; the keys file's own checks; duplicates across both files; the
`[audit]` table; and `petit run --print-config` showing the keys by name and role, never a hash."""

from __future__ import annotations

import os
import re

import pytest
from jobfiles import job_yaml, write_job
from processes import run_petit

from petit.errors import UsageError
from petit.ipc.access import ApiKey, Role, hash_key
from petit.ipc.audit import DEFAULT_KEEP, DEFAULT_MAX_BYTES
from petit.service.config_file import read_config_file
from petit.service.security_config import (
    AuditPolicy,
    keys_file_path,
    read_api_keys,
    read_audit_policy,
)

pytestmark = pytest.mark.timeout(60)
GRAFANA, CI, OPS = hash_key("grafana's key"), hash_key("ci's key"), hash_key("ops's key")


def block(name: str, role: str, digest: str) -> str:
    return f'[[api_keys]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{digest}"\n'


@pytest.fixture
def here(tmp_path, monkeypatch):
    """tmp_path as the current folder, so that messages name ./petit.toml as "petit.toml"."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config(text: str, name: str = "petit.toml"):
    with open(name, "w") as handle:
        handle.write(text)
    return read_config_file(name)


def keys_file(path, text: str, mode: int = 0o600) -> str:
    path = str(path)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def refused(call) -> str:
    with pytest.raises(UsageError) as caught:
        call()
    assert caught.value.exit_code == 2
    return caught.value.message


# -- where keys come from ----------------------------------------------------------------------


def test_no_keys_anywhere_is_none_and_an_emptied_list_is_not(here):
    assert read_api_keys(None) is None
    assert read_api_keys(config("max_tasks = 2\n")) is None
    assert read_api_keys(config("api_keys = []\n")) == ()
    keys_file(here / "keys.toml", "# every key was revoked\n")
    assert read_api_keys(config('api_keys_file = "keys.toml"\n')) == ()


def test_keys_are_read_from_petit_toml_then_the_keys_file_with_their_lines(here):
    path = keys_file(here / "keys.toml", "# ops\n\n" + block("ops", "admin", OPS.upper()))
    toml = config(
        'api_keys_file = "keys.toml"\n\n'
        + block("grafana", "read", GRAFANA)
        + "\n"
        + block("ci", "operate", CI)
    )
    assert read_api_keys(toml) == (
        ApiKey("grafana", Role.READ, GRAFANA, "petit.toml line 3"),
        ApiKey("ci", Role.OPERATE, CI, "petit.toml line 8"),
        ApiKey("ops", Role.ADMIN, OPS, f"{path} line 3"),
    )


def test_the_keys_file_is_found_from_petit_toml_s_folder(here):
    (here / "etc").mkdir()
    keys_file(here / "etc" / "keys.toml", block("ci", "operate", CI))
    toml = config('api_keys_file = "keys.toml"\n', name="etc/petit.toml")
    assert keys_file_path(toml) == str(here / "etc" / "keys.toml")
    assert [key.name for key in read_api_keys(toml)] == ["ci"]
    assert keys_file_path(None) is None


def test_a_keys_file_that_does_not_exist_yet_is_an_error_except_for_keys_new(here):
    toml = config('api_keys_file = "keys.toml"\n' + block("ci", "operate", CI))
    path = here / "keys.toml"
    assert refused(lambda: read_api_keys(toml)) == (
        f"petit.toml line 1: api_keys_file: cannot read {path}: No such file or directory "
        "(petit keys new NAME --role ROLE creates it)"
    )
    assert [key.name for key in read_api_keys(toml, missing_file_ok=True)] == ["ci"]
    os.symlink(here / "nowhere", path)  # a dangling link is not a file to create
    assert refused(lambda: read_api_keys(toml, missing_file_ok=True)).startswith(
        f"petit.toml line 1: api_keys_file: cannot read {path}: No such file or directory"
    )


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666, 0o660])
def test_a_keys_file_others_may_write_is_refused_with_the_chmod_that_fixes_it(here, mode):
    path = keys_file(here / "keys.toml", block("ci", "operate", CI), mode)
    toml = config('max_tasks = 2\napi_keys_file = "keys.toml"\n')
    assert refused(lambda: read_api_keys(toml)) == (
        f"petit.toml line 2: api_keys_file: {path} may be written by group or others (mode "
        f"0{mode:o}), who could add a key of their own: run chmod 600 {path}"
    )


def test_a_keys_file_others_may_only_read_is_fine(here):
    keys_file(here / "keys.toml", block("ci", "operate", CI), 0o644)  # hashes, not keys
    assert [key.name for key in read_api_keys(config('api_keys_file = "keys.toml"\n'))] == ["ci"]


def test_a_folder_in_place_of_the_keys_file_is_refused(here):
    (here / "keys.toml").mkdir()
    assert refused(lambda: read_api_keys(config('api_keys_file = "keys.toml"\n'))) == (
        f"petit.toml line 1: api_keys_file: {here / 'keys.toml'} is not a regular file: "
        "expected a TOML file of keys"
    )


@pytest.mark.parametrize("value", ["5", '""', '"  "', "[]", "true"])
def test_a_keys_file_setting_that_is_not_a_path_is_refused(here, value):
    raw = {"5": "5", '""': "", '"  "': "  ", "[]": "[]", "true": "True"}[value]
    toml = config(f"max_tasks = 2\napi_keys_file = {value}\n")
    assert refused(lambda: read_api_keys(toml)) == (
        "petit.toml line 2: api_keys_file: expected the path of a TOML file of [[api_keys]] "
        f"tables, got {raw!r}"
    )


def test_a_keys_file_holds_keys_only(here):
    path = keys_file(here / "keys.toml", block("ci", "operate", CI) + "\n[audit]\nkeep = 3\n")
    assert refused(lambda: read_api_keys(config('api_keys_file = "keys.toml"\n'))) == (
        f"{path} line 6: unknown key 'audit': a keys file holds [[api_keys]] tables only"
    )
    keys_file(path, "max_tasks = 3\n" + block("ci", "operate", CI))
    assert refused(lambda: read_api_keys(config('api_keys_file = "keys.toml"\n'))) == (
        f"{path} line 1: unknown key 'max_tasks': a keys file holds [[api_keys]] tables only"
    )


def test_a_keys_file_that_is_not_toml_names_its_line(here):
    path = keys_file(here / "keys.toml", block("ci", "operate", CI) + 'name = "x"\n')
    message = refused(lambda: read_api_keys(config('api_keys_file = "keys.toml"\n')))
    assert message.startswith(f"{path} line 5: invalid TOML: "), message


# -- each bad value, in petit.toml and in the keys file ----------------------------------------

BAD_VALUES = [
    ('role = "reader"', 7, "api_keys[1].role: expected one of read, operate, admin, got 'reader'"),
    ("role = 3", 7, "api_keys[1].role: expected one of read, operate, admin, got '3'"),
    (
        'name = "two words"',
        6,
        "api_keys[1].name: expected a key name of 1 to 64 letters, digits and _ . @ - "
        "(starting with a letter or digit), got 'two words'",
    ),
    (
        'name = "api-token"',
        6,
        "api_keys[1].name: 'api-token' is the name of --api-token: choose another",
    ),
    (
        'sha256 = "0123"',
        8,
        "api_keys[1].sha256: expected the 64 hex digits `petit keys new` prints, got 4 characters",
    ),
    (
        "sha256 = 12",
        8,
        "api_keys[1].sha256: expected the 64 hex digits `petit keys new` prints, got int",
    ),
    (
        'key = "petit_abc"',
        9,
        "api_keys[1]: unknown field 'key': expected name, role, sha256 (a key itself never goes "
        "in a file: only its sha256)",
    ),
    ('owner = "me"', 9, "api_keys[1]: unknown field 'owner': expected name, role, sha256"),
]


def with_bad(line: str) -> str:
    """Two keys, the second with `line` in place of its own line of that field, or added."""
    field = line.split(" =")[0]
    second = block("ci", "operate", CI).splitlines()
    replaced = [line if row.startswith(f"{field} =") else row for row in second]
    if replaced == second:
        replaced.append(line)
    return block("grafana", "read", GRAFANA) + "\n".join(replaced) + "\n"


@pytest.mark.parametrize(("line", "line_number", "message"), BAD_VALUES)
def test_each_bad_value_in_petit_toml_names_the_file_its_line_and_the_field(
    here, line, line_number, message
):
    toml = config(with_bad(line))
    assert refused(lambda: read_api_keys(toml)) == f"petit.toml line {line_number}: {message}"


@pytest.mark.parametrize(("line", "line_number", "message"), BAD_VALUES)
def test_each_bad_value_in_the_keys_file_names_that_file_its_line_and_the_field(
    here, line, line_number, message
):
    path = keys_file(here / "keys.toml", "\n" + with_bad(line))
    toml = config('api_keys_file = "keys.toml"\n')
    assert refused(lambda: read_api_keys(toml)) == f"{path} line {line_number + 1}: {message}"


def test_a_missing_field_names_the_table_it_is_missing_from(here):
    toml = config(
        block("grafana", "read", GRAFANA) + '\n[[api_keys]]\nname = "ci"\nrole = "read"\n'
    )
    assert refused(lambda: read_api_keys(toml)) == (
        "petit.toml line 6: api_keys[1]: missing 'sha256'"
    )


def test_api_keys_that_are_not_tables_are_refused_on_their_line(here):
    toml = config('max_tasks = 2\napi_keys = "grafana"\n')
    assert refused(lambda: read_api_keys(toml)) == (
        "petit.toml line 2: api_keys: expected [[api_keys]] tables, each with name, role, sha256"
    )


# -- duplicates --------------------------------------------------------------------------------


def test_a_name_declared_in_both_files_is_refused_naming_both(here):
    path = keys_file(here / "keys.toml", block("ops", "admin", OPS) + block("ci", "read", GRAFANA))
    toml = config('api_keys_file = "keys.toml"\n' + block("ci", "operate", CI))
    assert refused(lambda: read_api_keys(toml)) == (
        f"{path} line 5: api_keys: the name 'ci' is already declared at petit.toml line 2"
    )


def test_one_key_under_two_names_is_refused_naming_both(here):
    path = keys_file(here / "keys.toml", block("robot", "admin", CI.upper()))
    toml = config('api_keys_file = "keys.toml"\n' + block("ci", "operate", CI))
    assert refused(lambda: read_api_keys(toml)) == (
        f"{path} line 1: api_keys: key 'robot' has the same sha256 as 'ci' (petit.toml line 2): "
        "one key, one name"
    )


def test_a_name_declared_twice_in_one_file_is_refused(here):
    toml = config(block("ci", "operate", CI) + block("ci", "read", GRAFANA))
    assert refused(lambda: read_api_keys(toml)) == (
        "petit.toml line 5: api_keys: the name 'ci' is already declared at petit.toml line 1"
    )


# -- [audit] -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "policy"),
    [
        ("", AuditPolicy(DEFAULT_MAX_BYTES, DEFAULT_KEEP)),
        ("[audit]\n", AuditPolicy(10 << 20, 5)),
        ("[audit]\nmax_size = 4096\n", AuditPolicy(4096, 5)),
        ('[audit]\nmax_size = "512KiB"\nkeep = 0\n', AuditPolicy(512 << 10, 0)),
        ('[audit]\nmax_size = "10MiB"\nkeep = 100\n', AuditPolicy(10 << 20, 100)),
        ('[audit]\nmax_size = "1GiB"\n', AuditPolicy(1 << 30, 5)),
        ('[audit]\nmax_size = "1024"\n', AuditPolicy(1024, 5)),
        ('[audit]\nmax_size = " 2 MiB "\n', AuditPolicy(2 << 20, 5)),
        ('[audit]\nmax_size = "2048B"\n', AuditPolicy(2048, 5)),
        ("audit = { keep = 2 }\n", AuditPolicy(10 << 20, 2)),
    ],
)
def test_audit_sizes_and_counts_are_read_with_their_units(here, table, policy):
    assert read_audit_policy(config(f"max_tasks = 2\n{table}")) == policy
    assert read_audit_policy(None) == AuditPolicy(10 << 20, 5)


SIZE_EXPECTED = 'expected a size in bytes, or like "10MiB", "512KiB", "1GiB", got'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_size = 1023", "audit.max_size: must be from 1KiB to 1GiB, got 1023 bytes"),
        ("max_size = 0", "audit.max_size: must be from 1KiB to 1GiB, got 0 bytes"),
        ('max_size = "2GiB"', "audit.max_size: must be from 1KiB to 1GiB, got 2147483648 bytes"),
        ('max_size = "10MB"', f"audit.max_size: {SIZE_EXPECTED} '10MB'"),
        ('max_size = "10 mib"', f"audit.max_size: {SIZE_EXPECTED} '10 mib'"),
        ('max_size = "1.5MiB"', f"audit.max_size: {SIZE_EXPECTED} '1.5MiB'"),
        ('max_size = "-5"', f"audit.max_size: {SIZE_EXPECTED} '-5'"),
        ("max_size = 1.5", f"audit.max_size: {SIZE_EXPECTED} '1.5'"),
        ("max_size = true", f"audit.max_size: {SIZE_EXPECTED} 'True'"),
        (
            "keep = 101",
            "audit.keep: expected a whole number of rotated files to keep, 0 to 100, got '101'",
        ),
        (
            "keep = -1",
            "audit.keep: expected a whole number of rotated files to keep, 0 to 100, got '-1'",
        ),
        (
            "keep = 2.0",
            "audit.keep: expected a whole number of rotated files to keep, 0 to 100, got '2.0'",
        ),
        (
            'keep = "5"',
            "audit.keep: expected a whole number of rotated files to keep, 0 to 100, got '5'",
        ),
        (
            "keep = true",
            "audit.keep: expected a whole number of rotated files to keep, 0 to 100, got 'True'",
        ),
        ("rotate = 3", "audit: unknown key 'rotate': expected max_size, keep"),
    ],
)
def test_each_bad_audit_value_names_the_file_its_line_and_the_key(here, line, message):
    toml = config(f"max_tasks = 2\n\n[audit]\n{line}\n")
    assert refused(lambda: read_audit_policy(toml)) == f"petit.toml line 4: {message}"


def test_audit_that_is_not_a_table_is_refused(here):
    toml = config("max_tasks = 2\naudit = 5\n")
    assert refused(lambda: read_audit_policy(toml)) == (
        "petit.toml line 2: audit: expected a table ([audit])"
    )


# -- petit run --print-config ------------------------------------------------------------------


def print_config(tmp_path) -> tuple[dict[str, tuple[str, str]], str]:
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    write_job(jobs, "tick.yaml", job_yaml("tick", "echo tick"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETIT_")}
    result = run_petit("run", str(jobs), "--print-config", cwd=str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        key, value, *source = re.split(r"  +", line)
        rows[key] = (value, source[0] if source else "")
    return rows, result.stdout


def test_print_config_shows_the_keys_by_name_and_role_and_the_audit_rotation(tmp_path):
    keys_file(tmp_path / "keys.toml", block("ops", "admin", OPS))
    (tmp_path / "petit.toml").write_text(
        'api_keys_file = "keys.toml"\n\n'
        + block("grafana", "read", GRAFANA)
        + block("ci", "operate", CI)
        + '\n[audit]\nmax_size = "512KiB"\nkeep = 3\n'
    )
    rows, out = print_config(tmp_path)
    assert rows["api_keys"] == ("grafana (read), ci (operate), ops (admin)", "petit.toml line 3")
    assert rows["audit.max_size"] == ("524288 bytes", "petit.toml line 13")
    assert rows["audit.keep"] == ("3", "petit.toml line 14")
    for digest in (GRAFANA, CI, OPS):
        assert digest not in out and digest.upper() not in out


def test_print_config_says_when_no_key_is_asked_and_when_none_is_left(tmp_path):
    rows, _ = print_config(tmp_path)
    assert rows["api_keys"] == ("(none: no key asked)", "default")
    assert rows["audit.max_size"] == (f"{10 << 20} bytes", "default")
    assert rows["audit.keep"] == ("5", "default")
    (tmp_path / "petit.toml").write_text("api_keys = []\n")
    rows, _ = print_config(tmp_path)
    assert rows["api_keys"] == ("(none left)", "petit.toml line 1")
    assert rows["audit.keep"] == ("5", "default")


def test_print_config_names_the_keys_file_line_and_defaults_inside_the_audit_table(tmp_path):
    keys_file(tmp_path / "keys.toml", block("ops", "admin", OPS))
    (tmp_path / "petit.toml").write_text(
        'max_tasks = 2\napi_keys_file = "keys.toml"\n[audit]\nkeep = 0\n'
    )
    rows, out = print_config(tmp_path)
    assert rows["api_keys"] == ("ops (admin)", "petit.toml line 2")
    assert rows["audit.keep"] == ("0", "petit.toml line 4")
    assert rows["audit.max_size"] == (f"{10 << 20} bytes", "default")
    assert OPS not in out


def test_a_bad_keys_file_stops_petit_run_with_one_line_and_exit_2(tmp_path):
    keys_file(tmp_path / "keys.toml", block("ops", "root", OPS))
    (tmp_path / "petit.toml").write_text('api_keys_file = "keys.toml"\n')
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    result = run_petit("run", str(jobs), "--print-config", cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        f"petit: {tmp_path / 'keys.toml'} line 3: api_keys[0].role: expected one of read, "
        "operate, admin, got 'root'\n"
    )
