"""The service process: accepts clients, queues petitions, starts them, stops them.

By role: ``build`` composes everything (the one composition root); ``daemon`` is the
process loop (listener, signals, watchdog, stop); ``server`` and ``session`` serve
connections (the ``multiprocessing.managers`` protocol), ``streams`` what clients read
in batches; ``handlers`` answer each operation of ``orcha.protocol.operations``;
``service`` is the core a petition goes through (intake, cancel, ends; ``children`` for
the petitions a kind submits); ``scheduler`` admits onto ``machines`` by ``predicates``
(``loans`` for parents waiting on children), ``runner`` runs, ``events`` fans out,
``store`` and ``logs`` keep records and output (``saving`` retries what cannot be
saved yet, ``migrations`` keeps the schema), ``recovery`` takes back what a previous
service left. The full map is docs/internals.rst.
"""
