"""What the service and its clients share: the operations table, the plain data that
travels in requests and streams, and the wire (``multiprocessing.connection``'s frames
and handshake, spoken leanly by clients in :mod:`orcha.protocol.wire`).

The service serves it as a ``multiprocessing.managers`` server (:mod:`orcha.service.server`
and :mod:`orcha.service.session`); docs/protocol.rst describes it for other programs.
"""
