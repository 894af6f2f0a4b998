"""Identifiers: a prefix and 12 base-62 characters, never the same twice, not even across a fork."""

from __future__ import annotations

import os
import re
import string
from collections import Counter

import pytest

from lunark.ids import new_id


def test_ids_are_a_prefix_and_12_base62_characters_all_different() -> None:
    ids = [new_id("msg_") for _ in range(20_000)]
    assert all(re.fullmatch(r"msg_[0-9A-Za-z]{12}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    counts = Counter("".join(i[4:] for i in ids))
    assert set(counts) == set(string.digits + string.ascii_letters)
    expected = 20_000 * 12 / 62
    assert all(0.8 * expected < n < 1.2 * expected for n in counts.values()), "every character as likely"


# The child only draws ids, writes them and exits: no lock of another thread is ever taken in it.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id("x_")  # the parent holds random bytes it has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, ",".join(new_id("x_") for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 4096).decode().split(","))
    os.close(read)
    parent = {new_id("x_") for _ in range(5)}
    assert len(child) == 5 and not child & parent
