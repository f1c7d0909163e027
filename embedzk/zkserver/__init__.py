"""ZooKeeper's client protocol served by a peer, so that kazoo, zkCli, Curator and every ZooKeeper tool can use an
embedzk cluster: ``Peer(..., client_address="127.0.0.1:2181")``.

:mod:`~embedzk.zkserver.server` runs the TCP server on a thread of its own, :mod:`~embedzk.zkserver.connection`
one client's connection, :mod:`~embedzk.zkserver.operations` what each request means to the replica (sans-IO),
:mod:`~embedzk.zkserver.fourletter` the four-letter words, :mod:`~embedzk.zkserver.settings` the settings with
ZooKeeper's names. The wire format itself is :mod:`embedzk.zkwire`.
"""

from embedzk.zkserver.settings import ClientSettings

__all__ = ["ClientSettings"]
