"""A run's evidence as a hash chain (issue 17), pure: linking entries and finding the first bad one.

Each entry holds its sequence number, its content and the hash of the entry before it; its own
hash covers all three. Rewriting one entry breaks its hash; deleting one breaks the next entry's
link; inserting one breaks a link too; cutting the end off is seen against the head published
elsewhere (a compacted Kafka topic keyed by run), which the database alone cannot rewrite.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

GENESIS = "0" * 64  # the "previous hash" of a run's first entry


def canonical(content: Mapping[str, Any]) -> str:
    """An entry's content as the hash sees it: JSON, keys sorted, no spaces, UTF-8 as is."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(seq: int, prev: str, content: Mapping[str, Any], text: str | None = None) -> str:
    """sha256 of ``[seq, prev, content]`` as canonical JSON; ``text``: ``canonical(content)``
    when the caller has it already (a writer stores that text, and encodes it once)."""
    doc = f'[{seq},"{prev}",{canonical(content) if text is None else text}]'
    return hashlib.sha256(doc.encode()).hexdigest()


@dataclass(frozen=True)
class Link:
    seq: int                      # 1, 2, 3... per run
    content: Mapping[str, Any]
    prev: str                     # the previous entry's hash (GENESIS for the first)
    hash: str


def link(seq: int, prev: str, content: Mapping[str, Any]) -> Link:
    """Entry ``seq`` holding ``content``, after the entry whose hash is ``prev``."""
    return Link(seq, content, prev, entry_hash(seq, prev, content))


def append(chain: Sequence[Link], content: Mapping[str, Any]) -> Link:
    """The next entry of ``chain`` holding ``content``."""
    seq, prev = (chain[-1].seq + 1, chain[-1].hash) if chain else (1, GENESIS)
    return link(seq, prev, content)


class Flaw(StrEnum):
    MODIFIED = "modified"    # its content or sequence number is not what its hash covers
    DELETED = "deleted"      # an entry before this one is missing
    INSERTED = "inserted"    # this entry was not in the chain
    TRUNCATED = "truncated"  # the chain ends before the published head


@dataclass(frozen=True)
class Finding:
    seq: int
    flaw: Flaw
    detail: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.flaw.value} ({self.detail})"


def verify(chain: Sequence[Link], head: str | None = None) -> Finding | None:
    """The first bad entry of ``chain`` (in sequence order), or None. ``head``: the last hash
    published elsewhere for this run; without it a cut-off end cannot be seen."""
    by_hash = {link.hash: link for link in chain}
    prev_hash, expected_seq = GENESIS, 1
    for i, link in enumerate(chain):
        if entry_hash(link.seq, link.prev, link.content) != link.hash:
            return _unhashed(link)
        if link.prev != prev_hash:
            return _broken_link(chain, i, prev_hash, expected_seq, by_hash)
        if link.seq != expected_seq:
            return Finding(link.seq, Flaw.MODIFIED, f"sequence {link.seq} where {expected_seq} was due")
        prev_hash, expected_seq = link.hash, expected_seq + 1
    if head is not None and head != prev_hash:
        if head in by_hash:
            return Finding(by_hash[head].seq + 1, Flaw.INSERTED, "entries after the published head")
        return Finding(expected_seq, Flaw.TRUNCATED, "the published head is not in the chain")
    return None


RENUMBERED = 5  # how far a renumbered entry is looked for (rows put in or taken out before it)


def _unhashed(link: Link) -> Finding:
    """Why ``link``'s hash does not cover it: renumbered (rows were put in or taken out before it,
    and the later ones moved to make room or close the gap), or rewritten."""
    for shift in (s for k in range(1, RENUMBERED + 1) for s in (k, -k)):
        if link.seq - shift >= 1 and entry_hash(link.seq - shift, link.prev, link.content) == link.hash:
            if shift > 0:
                return Finding(link.seq - shift, Flaw.INSERTED, f"entry {link.seq} was entry {link.seq - shift}: "
                                                                f"{shift} put before it, the rest renumbered")
            return Finding(link.seq, Flaw.DELETED, f"entry {link.seq} was entry {link.seq - shift}: "
                                                   f"{-shift} taken out before it, the rest renumbered")
    return Finding(link.seq, Flaw.MODIFIED, "its hash does not cover what it holds")


def _broken_link(chain: Sequence[Link], i: int, prev_hash: str, expected_seq: int,
                 by_hash: Mapping[str, Link]) -> Finding:
    """Why entry ``i`` does not link to the entry before it (whose hash is ``prev_hash``)."""
    link = chain[i]
    nxt = chain[i + 1] if i + 1 < len(chain) else None
    if nxt is not None and nxt.prev == prev_hash:
        return Finding(link.seq, Flaw.INSERTED, "the entry after it links past it")
    before_prev = chain[i - 2].hash if i >= 2 else GENESIS
    if i >= 1 and link.prev == before_prev:
        return Finding(chain[i - 1].seq, Flaw.INSERTED, f"entry {link.seq} links past it")
    if link.prev not in by_hash and link.seq > expected_seq:
        return Finding(expected_seq, Flaw.DELETED, f"entry {link.seq} links to an entry that is gone")
    return Finding(link.seq, Flaw.MODIFIED, "it links to another entry than the one before it "
                                            "(it, or the one before it, was rewritten)")
