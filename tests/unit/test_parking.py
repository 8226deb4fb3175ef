"""Per-key parking: a model of the source agent and FIFO stage topics proves that no event of a
key overtakes a parked one, while other keys keep flowing."""

from collections import deque

from relay.handling.parking import Parking, Route


def simulate(events, failures, stages=3):
    """events: [(key, id)] in source order; failures: {id: times it fails before succeeding}.
    Returns the order in which handlers succeeded, and the parked-key count at the end."""
    parking, done, queues = Parking({}), [], {n: deque() for n in range(1, stages + 2)}
    left = dict(failures)

    def attempt(key, eid, stage_of_failure):
        if left.get(eid, 0) > 0:
            left[eid] -= 1
            nxt = stage_of_failure + 1
            parking.park_head(key, eid, nxt)
            queues[nxt].append((key, eid, "head"))
            return False
        done.append(eid)
        return True

    for key, eid in events:  # the source agent
        if parking.route(key) == Route.PARK:
            queues[parking.add_behind(key)].append((key, eid, "behind"))
        else:
            attempt(key, eid, 0)
    progressed = True
    while progressed:  # stage agents, each FIFO
        progressed = False
        for n in sorted(queues):
            while queues[n]:
                key, eid, role = queues[n].popleft()
                progressed = True
                if role == "head":
                    if attempt(key, eid, n):
                        parking.head_done(key)
                elif parking.head_pending(key):  # head still waiting further up: move along behind it
                    queues[parking.state(key).stage].append((key, eid, "behind"))
                else:
                    done.append(eid)
                    parking.behind_done(key)
    return done, parking.parked_keys()


def per_key(order, events):
    key_of = dict((eid, key) for key, eid in events)
    out = {}
    for eid in order:
        out.setdefault(key_of[eid], []).append(eid)
    return out


def test_later_events_of_a_failing_key_wait_other_keys_flow():
    events = [("A", "a1"), ("B", "b1"), ("A", "a2"), ("B", "b2"), ("A", "a3"), ("C", "c1")]
    done, parked = simulate(events, {"a1": 2})
    assert per_key(done, events) == {"A": ["a1", "a2", "a3"], "B": ["b1", "b2"], "C": ["c1"]}
    assert done.index("b2") < done.index("a1"), "B was not held up by A's retries"
    assert parked == 0


def test_failures_in_the_middle_and_in_several_keys():
    events = [(k, f"{k}{i}") for i in range(6) for k in "XYZ"]
    done, parked = simulate(events, {"X2": 1, "X4": 2, "Y0": 3, "Z5": 1})
    assert per_key(done, events) == {k: [f"{k}{i}" for i in range(6)] for k in "XYZ"}
    assert sorted(done) == sorted(e for _, e in events) and parked == 0


def test_done_on_an_unparked_key_is_a_no_op():
    from relay.handling.parking import Parking

    table = {}
    parking = Parking(table)
    parking.head_done("K")
    parking.behind_done("K")
    assert table.get("K") is None


def test_behind_records_take_turns_by_sequence_across_stages():
    """A behind record parked after its head moved on can reach a stage before an earlier one:
    it is handled only at its turn (the consumer puts it back to wait otherwise)."""
    from relay.handling.parking import Parking

    table = {}
    p = Parking(table)
    p.park_head("K", "e1", 1)
    p.add_behind("K")  # e2: seq 1, in stage 1
    p.park_head("K", "e1", 2)  # e1 failed again: stage 2
    p.add_behind("K")  # e3: seq 2, sent to stage 2 while e2 still sits in stage 1
    p.head_done("K")
    assert not p.turn("K", 2) and p.turn("K", 1)
    p.behind_done("K", 1)
    assert p.turn("K", 2)
    p.behind_done("K", 2)
    assert table["K"] is None, "unparked once the head and every behind record are done"


def test_a_failing_behind_record_leads_and_keeps_the_sequence():
    from relay.handling.parking import Parking

    table = {}
    p = Parking(table)
    p.park_head("K", "e1", 1)
    p.add_behind("K")
    p.add_behind("K")
    p.head_done("K")
    p.park_head("K", "e2", 1)  # e2 (seq 1) failed while being handled: it leads now
    p.behind_done("K", 1)
    state = p.state("K")
    assert (state.head, state.behind, state.tail, state.done) == ("e2", 1, 2, 1)
    assert p.turn("K", 2)
