"""Membership: who the members are, how a cluster is founded, how peers join and leave, and who votes.

* :mod:`~embedzk.membership.identity`: a member is its id and its disk (member keys, the record a disk keeps);
* :mod:`~embedzk.membership.founding`: the founders agree once on a new cluster's id and first voters;
* :mod:`~embedzk.membership.autopilot`: the leader keeps the configured number of voters among live members;
* :mod:`~embedzk.membership.versions`: the protocol versions peers speak and the version the cluster runs;
* :mod:`~embedzk.membership.messages`: what peers say to each other about all of this.

Everything here is sans-IO, driven by the replica (:mod:`embedzk.replica`).
"""
