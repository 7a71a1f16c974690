"""The directory door (access/directory.py) against a real slapd."""

from __future__ import annotations

import pytest

from access import directory as door
from access.directory import DirectoryConfig, DirectoryError, DirectoryUnavailable


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("*", r"\2a"),
        ("(", r"\28"),
        (")", r"\29"),
        ("\\", r"\5c"),
        ("\x00", r"\00"),
        ("a*)(uid=*", r"a\2a\29\28uid=\2a"),
    ],
)
def test_filter_values_are_escaped(value, escaped):
    assert door.escape(value) == escaped


@pytest.mark.parametrize(
    ("dn", "normal"),
    [
        ("CN=Bob Smith, OU=People ,DC=Example,DC=Com", "cn=bob smith,ou=people,dc=example,dc=com"),
        ("uid=alice,ou=people,dc=x", "uid=alice,ou=people,dc=x"),
        (r"CN=Smith\, Bob,OU=People,DC=x", r"cn=smith\, bob,ou=people,dc=x"),
    ],
)
def test_dns_are_compared_in_one_canonical_form(dn, normal):
    assert door.normalize_dn(dn) == normal


def test_a_username_with_filter_characters_finds_only_that_person(directory):
    # given: a person whose uid is made of filter syntax, and others it must not match
    directory.add_person("alice")
    directory.add_person("bob")
    directory.add_person("star*(x)\\")
    config = DirectoryConfig.from_settings()
    # then
    assert door.find_person(config, "star*(x)\\").username == "star*(x)\\"
    assert door.find_person(config, "*") is None
    assert door.find_person(config, "a*") is None
    assert door.find_person(config, "alice)(uid=*") is None
    assert door.find_person(config, "bob\x00") is None
    assert door.find_person(config, "alice").username == "alice"


def test_paging_reads_every_entry_across_pages(directory):
    for i in range(10):
        directory.add_person(f"user{i}")
    config = DirectoryConfig.from_settings()  # page size 3 in tests
    conn = door.connect(config)

    pages = list(door.read_people(conn, config, door.PageStats()))

    assert len(pages) >= 4
    assert sorted(p.username for page in pages for p in page) == sorted(
        f"user{i}" for i in range(10)
    )


def test_a_reader_that_stops_early_abandons_the_search(directory):
    for i in range(10):
        directory.add_person(f"user{i}")
    config = DirectoryConfig.from_settings()
    conn = door.connect(config)

    first = next(door.read_people(conn, config, door.PageStats()))

    assert len(first) == 3
    # the connection is still usable for the next search
    assert door.find_person(config, "user5").username == "user5"


def test_connecting_with_no_uri_says_what_to_set(settings):
    settings.WARDEN_DIRECTORY = {**settings.WARDEN_DIRECTORY, "URI": ""}
    with pytest.raises(DirectoryUnavailable, match="set LDAP_URI"):
        door.connect(DirectoryConfig.from_settings())


def test_ping_reports_a_missing_user_base(directory, settings):
    settings.WARDEN_DIRECTORY = directory.settings(USER_BASE_DN="ou=gone,dc=warden,dc=test")
    with pytest.raises(DirectoryError, match="does not exist"):
        door.ping(DirectoryConfig.from_settings())


def test_an_invalid_filter_is_named(directory, settings):
    settings.WARDEN_DIRECTORY = directory.settings(USER_FILTER="(objectClass=inetOrgPerson")
    config = DirectoryConfig.from_settings()
    conn = door.connect(config)
    with pytest.raises(DirectoryError, match="not valid LDAP"):
        list(door.read_people(conn, config, door.PageStats()))


def test_ad_disabled_flag_is_read_from_user_account_control():
    config = DirectoryConfig(uri="ldap://x", disabled_attr="userAccountControl")
    assert door.is_disabled(config, {"userAccountControl": [b"514"]})
    assert not door.is_disabled(config, {"UserAccountControl": [b"512"]})
    assert not door.is_disabled(config, {})
