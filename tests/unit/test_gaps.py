from relay.verify import Delivered, detect_gaps

COMMITTED = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"]}


def rec(key, eid, part, off):
    return Delivered(key, eid, part, off)


def test_clean_delivery():
    records = [rec("a", "a1", 0, 0), rec("b", "b1", 1, 0), rec("a", "a2", 0, 1), rec("b", "b2", 1, 1),
               rec("a", "a3", 0, 2)]
    report = detect_gaps(COMMITTED, records)
    assert report.ok and report.committed == 5 and report.duplicates == 0 and not report.lost


def test_replay_after_crash_is_duplicates_not_disorder():
    records = [rec("a", "a1", 0, 0), rec("a", "a2", 0, 1), rec("a", "a1", 0, 2), rec("a", "a2", 0, 3),
               rec("a", "a3", 0, 4), rec("b", "b1", 1, 0), rec("b", "b2", 1, 1)]
    report = detect_gaps(COMMITTED, records)
    assert report.ok and report.duplicates == 2


def test_loss_disorder_wrong_key_and_split_are_reported():
    records = [rec("a", "a2", 0, 0), rec("a", "a1", 0, 1), rec("x", "b1", 1, 0), rec("b", "b2", 2, 0),
               rec("z", "other", 0, 9)]
    report = detect_gaps(COMMITTED, records)
    assert report.lost == ["a3"]
    assert report.out_of_order == ["a"]
    assert report.wrong_key == ["b1"]
    assert report.split_aggregates == ["b"]
    assert report.unexpected == 1 and not report.ok
