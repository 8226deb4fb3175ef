"""The evidence hash chain without I/O: a modified, a deleted and an inserted entry are each
found and named, also a rewritten entry whose hash was recomputed, and a cut-off end against the
published head."""

import dataclasses

from relay.governance.evidence import GENESIS, Flaw, append, entry_hash, link, verify


def chain_of(n):
    chain = []
    for k in range(1, n + 1):
        chain.append(append(chain, {"step": f"s{k}", "outcome": "dispatched", "rule": "allow-all"}))
    return chain


def forged(seq, prev, content):
    return dataclasses.replace(append([], content), seq=seq, prev=prev, hash=entry_hash(seq, prev, content))


def test_an_intact_chain_verifies_also_against_its_head():
    chain = chain_of(5)
    assert chain[0].prev == GENESIS and all(b.prev == a.hash for a, b in zip(chain, chain[1:], strict=False))
    assert verify(chain) is None and verify(chain, head=chain[-1].hash) is None


def test_a_modified_entry_is_named():
    chain = chain_of(5)
    chain[2] = dataclasses.replace(chain[2], content={**chain[2].content, "outcome": "approved"})
    found = verify(chain)
    assert (found.seq, found.flaw) == (3, Flaw.MODIFIED) and str(found).startswith("entry 3: modified")


def test_a_modified_entry_with_its_hash_recomputed_breaks_the_next_link():
    chain = chain_of(5)
    c3 = chain[2]
    content = {**c3.content, "outcome": "approved"}
    chain[2] = dataclasses.replace(c3, content=content, hash=entry_hash(3, c3.prev, content))
    assert (verify(chain).seq, verify(chain).flaw) == (4, Flaw.MODIFIED)


def test_a_deleted_entry_is_named():
    chain = chain_of(5)
    del chain[2]
    assert (verify(chain).seq, verify(chain).flaw) == (3, Flaw.DELETED)


def test_an_inserted_entry_is_named_wherever_it_links():
    chain = chain_of(5)
    linked = forged(3, chain[1].hash, {"step": "x", "outcome": "approved"})  # a valid link to entry 2
    assert (verify(chain[:2] + [linked] + chain[2:]).seq, verify(chain[:2] + [linked] + chain[2:]).flaw) == (
        3, Flaw.INSERTED)
    loose = forged(3, "f" * 64, {"step": "x", "outcome": "approved"})
    found = verify(chain[:2] + [loose] + chain[2:])
    assert (found.seq, found.flaw) == (3, Flaw.INSERTED)
    tail = chain + [forged(6, chain[-1].hash, {"step": "x"})]  # appended after the published head
    assert verify(tail) is None, "the database alone cannot tell"
    assert (verify(tail, head=chain[-1].hash).seq, verify(tail, head=chain[-1].hash).flaw) == (6, Flaw.INSERTED)


def test_a_cut_off_end_is_seen_against_the_published_head():
    chain = chain_of(5)
    found = verify(chain[:3], head=chain[-1].hash)
    assert (found.seq, found.flaw) == (4, Flaw.TRUNCATED)


def test_rows_renumbered_around_an_insertion_or_a_deletion_are_named_as_such():

    chain, prev = [], "0" * 64
    for i in range(1, 6):
        chain.append(link(i, prev, {"n": i}))
        prev = chain[-1].hash
    forged = link(3, chain[1].hash, {"n": "forged"})  # a valid row at 3; the old 3.. moved to 4..
    moved = [dataclasses.replace(x, seq=x.seq + 1) for x in chain[2:]]
    found = verify([*chain[:2], forged, *moved])
    assert (found.seq, found.flaw) == (3, Flaw.INSERTED) and "entry 4 was entry 3" in found.detail
    closed = [*chain[:2], *[dataclasses.replace(x, seq=x.seq - 1) for x in chain[3:]]]  # 3 gone, the gap closed
    found = verify(closed)
    assert (found.seq, found.flaw) == (3, Flaw.DELETED) and "entry 3 was entry 4" in found.detail
