"""Range retrieval as Windows answers it, fed to the door by a stand-in connection (unit)."""

from __future__ import annotations

import pytest
from ldap.controls import SimplePagedResultsControl

from access import directory as door
from access import services
from access.choices import SyncStatus
from access.directory import DirectoryConfig, DirectoryIncomplete
from access.models import Membership, Person, Team

GROUP_DN = "CN=everyone,OU=Teams,DC=corp,DC=example"
MEMBERS = [f"CN=user{i:05d},OU=People,DC=corp,DC=example".encode() for i in range(4000)]


class WindowsDC:
    """Answers as a Windows DC does: 1,500 values at most per attribute, named by their range,
    asked for or not; a base read of `member;range=N-M` gives the next range."""

    max_values = 1500

    def __init__(self, skip_from: int | None = None) -> None:
        self.skip_from = skip_from  # answer a later range than asked, once asked for this one
        self.asked: list[str] = []

    def _ranged(self, start: int) -> dict[str, list[bytes]]:
        if self.skip_from is not None and start == self.skip_from:
            start += self.max_values
        values = MEMBERS[start : start + self.max_values]
        end = start + len(values) - 1
        last = "*" if end >= len(MEMBERS) - 1 else str(end)
        return {f"member;range={start}-{last}": values}

    def search_ext(self, base, scope, flt, attrs, serverctrls=()):
        return 1

    def result3(self, msgid):
        # Unasked: the plain attribute comes back empty and the first range under its own name.
        entry = {"cn": [b"everyone"], "member": [], **self._ranged(0)}
        done = SimplePagedResultsControl(True, size=10, cookie=b"")
        return 101, [(GROUP_DN, entry)], msgid, [done]

    def search_ext_s(self, base, scope, flt, attrs):
        [asked] = attrs
        self.asked.append(asked)
        start = int(asked.split("=", 1)[1].split("-", 1)[0])
        return [(base, self._ranged(start))]

    def abandon(self, msgid):
        pass

    def unbind_s(self):
        pass


def read(server: WindowsDC) -> list[door.DirectoryGroup]:
    config = DirectoryConfig(uri="ldaps://dc", schema="ad", group_base_dn="DC=corp,DC=example")
    pages = door.read_groups(server, config, door.PageStats(), follow_up_conn=server)
    return [group for page in pages for group in page]


def test_the_unasked_first_range_windows_sends_is_read_to_the_end():
    server = WindowsDC()

    [group] = read(server)

    assert len(group.member_dns) == len(MEMBERS)
    assert server.asked == ["member;range=1500-2999", "member;range=3000-4499"]


def test_a_skipped_range_stops_the_read():
    with pytest.raises(DirectoryIncomplete, match="skipped a range"):
        read(WindowsDC(skip_from=1500))


@pytest.mark.django_db
def test_a_sync_that_meets_a_skipped_range_fails_and_revokes_nobody(monkeypatch, settings):
    # given: alice in everyone, as an earlier sync left them
    alice = Person.objects.create(dn="cn=alice,ou=people,dc=corp,dc=example", username="alice")
    team = Team.objects.create(dn=GROUP_DN.lower(), name="everyone")
    team.memberships.create(person=alice, is_direct=True)
    settings.WARDEN_DIRECTORY = {
        **settings.WARDEN_DIRECTORY,
        "URI": "ldaps://dc",
        "SCHEMA": "ad",
        "USER_BASE_DN": "DC=corp,DC=example",
        "GROUP_BASE_DN": "DC=corp,DC=example",
        "MAX_DEACTIVATE_SHARE": 1.0,
    }
    monkeypatch.setattr(door, "connect", lambda config: WindowsDC(skip_from=1500))

    # when: the directory skips a range of everyone's members
    run = services.sync_directory()

    # then: the run failed saying so, and alice keeps her person, team and membership
    assert run.status == SyncStatus.FAILED and "skipped a range" in run.error
    assert Person.objects.get(pk=alice.pk).is_active
    assert Membership.objects.filter(team=team, person=alice).exists()


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("member;range=0-1499", ("member", 0, 1499)),
        ("member;Range=1500-*", ("member", 1500, None)),
        ("member", None),
    ],
)
def test_range_descriptions_are_parsed(key, parsed):
    assert door.parse_range(key) == parsed


def test_a_binary_sid_reads_as_text():
    sid = bytes.fromhex("0105000000000005150000009684b76c1b15dbd5ae5265ff01020000")
    assert door.sid_to_str(sid) == "S-1-5-21-1823966358-3587904795-4284830382-513"
