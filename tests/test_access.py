"""The roles and the key table (petit/ipc/access.py): the order of the roles, which key a
presented key is, what "keys required" means, the hash and the fresh keys, and every message of
the checks that read [[api_keys]] tables."""

from __future__ import annotations

import re

import pytest

from petit.errors import UsageError
from petit.ipc.access import (
    KEY_PREFIX,
    MAX_KEYS,
    TOKEN_KEY_NAME,
    ApiKey,
    KeyTable,
    Role,
    check_key_name,
    check_role,
    check_unique,
    hash_key,
    key_block,
    new_key,
    read_key_entries,
)

pytestmark = pytest.mark.timeout(30)

# the SHA-256 of the empty string and of "abc" (FIPS 180-2's test vectors)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
TWO_BLOCKS = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
TWO_BLOCKS_SHA256 = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"


def where(key: str) -> str:
    """A stand-in for ConfigFile.where: the dotted key is kept, so each message shows it."""
    return f"keys.toml <{key}>"


def entry(name: str = "grafana", role: str = "read", sha256: str | None = None) -> dict:
    return {"name": name, "role": role, "sha256": sha256 or hash_key(name)}


def refused(entries) -> str:
    with pytest.raises(UsageError) as caught:
        read_key_entries(entries, where)
    assert caught.value.exit_code == 2
    return caught.value.message


# -- roles -------------------------------------------------------------------------------------


def test_each_role_allows_itself_and_the_ones_below_it_only():
    assert list(Role) == [Role.READ, Role.OPERATE, Role.ADMIN]
    allowed = {(have, need) for have in Role for need in Role if have.allows(need)}
    assert allowed == {
        (Role.READ, Role.READ),
        (Role.OPERATE, Role.READ),
        (Role.OPERATE, Role.OPERATE),
        (Role.ADMIN, Role.READ),
        (Role.ADMIN, Role.OPERATE),
        (Role.ADMIN, Role.ADMIN),
    }


# -- the key table -----------------------------------------------------------------------------


def declared(*names_roles: tuple[str, Role]) -> tuple[ApiKey, ...]:
    return tuple(
        ApiKey(name, role, hash_key(f"key of {name}"), f"petit.toml line {i}")
        for i, (name, role) in enumerate(names_roles, start=1)
    )


def test_every_declared_key_is_found_by_its_own_key_and_a_wrong_one_by_none():
    keys = declared(("grafana", Role.READ), ("ci", Role.OPERATE), ("ops", Role.ADMIN))
    table = KeyTable(keys)
    for key in keys:
        assert table.match(f"key of {key.name}") is key
    for wrong in ("", "key of", "key of grafana ", "KEY OF GRAFANA", hash_key("key of ci")):
        assert table.match(wrong) is None, wrong
    assert table.names() == {"grafana", "ci", "ops"}
    assert table.required


def test_the_token_is_one_more_admin_key_named_api_token():
    table = KeyTable(declared(("grafana", Role.READ)), token="s3cret-token")
    found = table.match("s3cret-token")
    assert found == ApiKey(TOKEN_KEY_NAME, Role.ADMIN, hash_key("s3cret-token"), "--api-token")
    assert (found.name, found.role) == ("api-token", Role.ADMIN)
    assert table.match("key of grafana").name == "grafana"
    assert table.names() == {"grafana", "api-token"}
    alone = KeyTable(None, token="s3cret-token")
    assert alone.required and alone.match("s3cret-token").name == "api-token"
    assert alone.match("s3cret") is None


def test_keys_are_required_unless_none_are_declared_and_there_is_no_token():
    assert KeyTable().required is False
    assert KeyTable(None, None).required is False
    assert KeyTable(None, "").required is False  # an empty token is no token
    assert KeyTable(None, "t").required is True
    # every key removed from a file that declared some: the API stays guarded, and refuses all
    empty = KeyTable(())
    assert empty.required is True
    assert empty.names() == frozenset()
    assert empty.match("") is None and empty.match("anything") is None


def test_a_key_crosses_the_wire_whole():
    key = declared(("ci", Role.OPERATE))[0]
    assert ApiKey.from_wire(key.as_wire()) == key
    assert key.as_wire() == {
        "name": "ci",
        "role": "operate",
        "sha256": hash_key("key of ci"),
        "where": "petit.toml line 1",
    }
    assert hash_key("key of ci") not in repr(key)  # a hash is not shown where a key is logged


# -- hashes and fresh keys ---------------------------------------------------------------------


def test_hash_key_is_the_hex_sha256_of_the_utf8_key():
    assert hash_key("") == EMPTY_SHA256
    assert hash_key("abc") == ABC_SHA256
    assert hash_key(TWO_BLOCKS) == TWO_BLOCKS_SHA256


def test_new_keys_are_prefixed_url_safe_256_bit_and_never_repeat():
    keys = [new_key() for _ in range(200)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert re.fullmatch(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{43}", key), key
        assert len(key) == len("petit_") + 43


def test_key_block_is_the_toml_that_declares_the_key():
    import tomllib

    digest = hash_key("k")
    block = key_block("ci", Role.OPERATE, digest)
    assert block == f'[[api_keys]]\nname = "ci"\nrole = "operate"\nsha256 = "{digest}"\n'
    assert read_key_entries(tomllib.loads(block)["api_keys"], where) == (
        ApiKey("ci", Role.OPERATE, digest, "keys.toml <api_keys[0]>"),
    )


# -- reading [[api_keys]] tables ---------------------------------------------------------------


def test_good_entries_are_read_in_order_with_their_hash_in_lower_case():
    upper = hash_key("b").upper()
    keys = read_key_entries([entry("a", "admin"), entry("b", "operate", upper)], where)
    assert keys == (
        ApiKey("a", Role.ADMIN, hash_key("a"), "keys.toml <api_keys[0]>"),
        ApiKey("b", Role.OPERATE, hash_key("b"), "keys.toml <api_keys[1]>"),
    )
    assert read_key_entries([], where) == ()


@pytest.mark.parametrize(
    "entries",
    [{"name": "a"}, "a", [entry(), "not a table"], [["name", "a"]], None],
    ids=["a-table", "a-string", "a-string-in-the-list", "a-list-in-the-list", "none"],
)
def test_anything_but_a_list_of_tables_is_refused(entries):
    assert refused(entries) == (
        "keys.toml <api_keys>: api_keys: expected [[api_keys]] tables, each with name, role, sha256"
    )


def test_more_than_the_most_keys_is_refused():
    many = [entry(f"k{i}") for i in range(MAX_KEYS + 1)]
    assert refused(many) == "keys.toml <api_keys>: api_keys: at most 1000 keys"
    assert len(read_key_entries(many[:MAX_KEYS], where)) == MAX_KEYS


BAD_ENTRIES = [
    (
        {**entry(), "comment": "x"},
        "keys.toml <api_keys[1].comment>: api_keys[1]: unknown field 'comment': expected name, "
        "role, sha256",
    ),
    (
        {**entry(), "key": "petit_abc"},
        "keys.toml <api_keys[1].key>: api_keys[1]: unknown field 'key': expected name, role, "
        "sha256 (a key itself never goes in a file: only its sha256)",
    ),
    (
        {"role": "read", "sha256": EMPTY_SHA256},
        "keys.toml <api_keys[1]>: api_keys[1]: missing 'name'",
    ),
    ({"name": "x", "sha256": EMPTY_SHA256}, "keys.toml <api_keys[1]>: api_keys[1]: missing 'role'"),
    ({"name": "x", "role": "read"}, "keys.toml <api_keys[1]>: api_keys[1]: missing 'sha256'"),
    (
        entry(name="has space"),
        "keys.toml <api_keys[1].name>: api_keys[1].name: expected a key name of 1 to 64 letters, "
        "digits and _ . @ - (starting with a letter or digit), got 'has space'",
    ),
    (
        entry(name="-dash"),
        "keys.toml <api_keys[1].name>: api_keys[1].name: expected a key name of 1 to 64 letters, "
        "digits and _ . @ - (starting with a letter or digit), got '-dash'",
    ),
    (
        entry(name="x" * 65),
        "keys.toml <api_keys[1].name>: api_keys[1].name: expected a key name of 1 to 64 letters, "
        f"digits and _ . @ - (starting with a letter or digit), got '{'x' * 65}'",
    ),
    (
        {**entry(), "name": 7},
        "keys.toml <api_keys[1].name>: api_keys[1].name: expected a key name of 1 to 64 letters, "
        "digits and _ . @ - (starting with a letter or digit), got '7'",
    ),
    (
        entry(name="api-token"),
        "keys.toml <api_keys[1].name>: api_keys[1].name: 'api-token' is the name of "
        "--api-token: choose another",
    ),
    (
        entry(role="root"),
        "keys.toml <api_keys[1].role>: api_keys[1].role: expected one of read, operate, admin, "
        "got 'root'",
    ),
    (
        entry(role="Admin"),
        "keys.toml <api_keys[1].role>: api_keys[1].role: expected one of read, operate, admin, "
        "got 'Admin'",
    ),
    (
        entry(sha256="abc"),
        "keys.toml <api_keys[1].sha256>: api_keys[1].sha256: expected the 64 hex digits "
        "`petit keys new` prints, got 3 characters",
    ),
    (
        entry(sha256="g" * 64),
        "keys.toml <api_keys[1].sha256>: api_keys[1].sha256: expected the 64 hex digits "
        "`petit keys new` prints, got 64 characters",
    ),
    (
        {**entry(), "sha256": 12},
        "keys.toml <api_keys[1].sha256>: api_keys[1].sha256: expected the 64 hex digits "
        "`petit keys new` prints, got int",
    ),
]


@pytest.mark.parametrize(("bad", "message"), BAD_ENTRIES)
def test_each_bad_entry_is_one_exact_message_naming_its_place_and_field(bad, message):
    assert refused([entry("first"), bad]) == message


def test_check_unique_refuses_a_name_or_a_key_declared_twice_naming_both_places():
    first = ApiKey("ci", Role.OPERATE, hash_key("one"), "petit.toml line 3")
    same_name = ApiKey("ci", Role.READ, hash_key("two"), "keys.toml line 8")
    same_hash = ApiKey("grafana", Role.READ, hash_key("one"), "keys.toml line 12")
    with pytest.raises(UsageError) as caught:
        check_unique([first, same_name])
    assert caught.value.message == (
        "keys.toml line 8: api_keys: the name 'ci' is already declared at petit.toml line 3"
    )
    with pytest.raises(UsageError) as caught:
        check_unique([first, same_hash])
    assert caught.value.message == (
        "keys.toml line 12: api_keys: key 'grafana' has the same sha256 as 'ci' "
        "(petit.toml line 3): one key, one name"
    )
    check_unique([first, ApiKey("grafana", Role.READ, hash_key("two"), "keys.toml line 12")])
    check_unique([])


def test_the_name_and_role_checks_blame_what_they_are_told():
    assert check_key_name("ops.team@example", "NAME") == "ops.team@example"
    assert check_role("admin", "--role") is Role.ADMIN
    with pytest.raises(UsageError, match=r"^NAME: 'api-token' is the name of --api-token"):
        check_key_name("api-token", "NAME")
    with pytest.raises(
        UsageError, match=r"^--role: expected one of read, operate, admin, got 'owner'$"
    ):
        check_role("owner", "--role")
