"""Local fencing (actorsys/cluster/fence.py), on a fake clock: a node stops serving
before etcd can expire its lease, counted from when it sent its last good renewal."""
from actorsys.cluster.fence import GRACE, MARGIN, Fence


def test_a_node_serves_only_after_its_first_renewal_and_until_before_the_lease_could_expire():
    f = Fence(ttl=5.0)
    assert not f.may_serve(0.0) and "not yet a member" in (f.why_not(0.0) or "")
    f.renewed(sent_at=10.0)                      # granted at 10: etcd expires it at >= 15
    stop = 10.0 + 5.0 * (1 - MARGIN) - GRACE
    assert stop < 15.0
    assert f.may_serve(stop - 0.001) and f.why_not(stop - 0.001) is None
    assert not f.may_serve(stop)
    assert "stopped serving its shards" in (f.why_not(stop + 1.0) or "")


def test_each_renewal_moves_the_deadline_and_a_late_answer_never_moves_it_back():
    f = Fence(ttl=3.0)
    f.renewed(sent_at=1.0)
    f.renewed(sent_at=2.0)
    later = f.serve_until
    f.renewed(sent_at=1.5)                       # an older renewal answered last
    assert f.serve_until == later
