"""Subject overlap, which JetStream checks between the subjects of one
stream and across streams. (Transforms are gnats.transform's.)"""


def subjects_collide(a, b):
    """Can one literal subject match both patterns? (nats-server's
    SubjectsCollide)."""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb):
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    # all shared tokens agree: only subjects of equal length collide
    return len(ta) == len(tb)
