"""The retention policy is a pure function: property tests over generated archive lists."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.retention import Candidate, Policy, decide, sort_key, to_delete

BASE = datetime(2026, 1, 1)


def name_at(minutes: int, suffix: int = 1) -> str:
    stamp = (BASE + timedelta(minutes=minutes)).strftime("%Y%m%d_%H%M%S")
    return f"training_backup_{stamp}{'' if suffix == 1 else f'_{suffix}'}.zip"


@st.composite
def archive_lists(draw: st.DrawFn) -> list[Candidate]:
    minutes = draw(st.lists(st.integers(0, 60 * 24 * 60), max_size=30, unique=True))
    return [
        Candidate(
            name=name_at(m),
            bytes=draw(st.integers(1, 1000)),
            pinned=draw(st.booleans().map(lambda b: b and draw(st.booleans()))),
            verified=draw(st.booleans()),
        )
        for m in minutes
    ]


policies = st.builds(
    Policy,
    keep_last=st.integers(0, 8),
    keep_daily=st.integers(0, 5),
    keep_weekly=st.integers(0, 3),
    max_total_bytes=st.one_of(st.none(), st.integers(1, 5000)),
)


def newest_first(archives: list[Candidate]) -> list[Candidate]:
    return sorted(archives, key=lambda a: sort_key(a.name), reverse=True)


@given(archive_lists(), policies)
def test_one_decision_per_archive_newest_first(archives, policy):
    decisions = decide(archives, policy)
    assert [d.name for d in decisions] == [a.name for a in newest_first(archives)]


@given(archive_lists(), policies)
def test_pinned_and_newest_verified_are_never_deleted(archives, policy):
    gone = set(to_delete(archives, policy))
    assert not {a.name for a in archives if a.pinned} & gone
    verified = [a for a in newest_first(archives) if a.verified]
    if verified:
        assert verified[0].name not in gone


@given(archive_lists(), policies.filter(lambda p: p.max_total_bytes is None))
def test_newest_keep_last_survive_without_a_cap(archives, policy):
    gone = set(to_delete(archives, policy))
    assert not {a.name for a in newest_first(archives)[: policy.keep_last]} & gone


@given(archive_lists(), policies.filter(lambda p: p.max_total_bytes is not None))
def test_cap_holds_unless_only_protected_archives_remain(archives, policy):
    assert policy.max_total_bytes is not None
    gone = set(to_delete(archives, policy))
    kept = [a for a in archives if a.name not in gone]
    verified = [a for a in newest_first(archives) if a.verified]
    protected = {a.name for a in archives if a.pinned} | ({verified[0].name} if verified else set())
    total = sum(a.bytes for a in kept)
    assert total <= policy.max_total_bytes or all(a.name in protected for a in kept)


@settings(max_examples=200)
@given(archive_lists(), policies)
def test_applying_twice_deletes_nothing_more(archives, policy):
    gone = set(to_delete(archives, policy))
    kept = [a for a in archives if a.name not in gone]
    assert to_delete(kept, policy) == []


@given(archive_lists(), policies, st.integers(1, 5))
def test_keeping_more_never_deletes_more(archives, policy, extra):
    more = Policy(policy.keep_last + extra, policy.keep_daily, policy.keep_weekly, None)
    less = Policy(policy.keep_last, policy.keep_daily, policy.keep_weekly, None)
    assert set(to_delete(archives, more)) <= set(to_delete(archives, less))


def test_default_keeps_the_newest_five():
    archives = [Candidate(name_at(i), 10) for i in range(8)]
    assert to_delete(archives, Policy()) == [name_at(2), name_at(1), name_at(0)]


def test_keep_daily_keeps_the_newest_of_each_recent_day():
    day = 24 * 60
    archives = [Candidate(name_at(m), 1) for m in (0, 10, day, day + 10, 2 * day, 2 * day + 5)]
    kept = {d.name for d in decide(archives, Policy(keep_last=0, keep_daily=2)) if not d.delete}
    assert kept == {name_at(2 * day + 5), name_at(day + 10)}


def test_same_second_suffix_sorts_after_the_plain_name():
    assert sort_key(name_at(0, 2)) > sort_key(name_at(0))
    archives = [Candidate(name_at(0), 1), Candidate(name_at(0, 2), 1)]
    assert to_delete(archives, Policy(keep_last=1)) == [name_at(0)]


def test_a_foreign_name_is_refused():
    with pytest.raises(ValueError, match="not an archive name"):
        decide([Candidate("notes.zip", 1)], Policy())
