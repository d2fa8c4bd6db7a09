"""The service process: accepts clients, queues petitions, starts them, stops them.

By role: ``build`` composes everything (the one composition root); ``daemon`` is the
process loop (listener, signals, watchdog, stop); ``server`` and ``session`` serve
connections; ``handlers`` answer each operation of ``orcha.protocol.operations``;
``service`` is the core a petition goes through (intake, cancel, ends); ``scheduler``
admits, ``runner`` runs, ``events`` fans out, ``store`` and ``logs`` keep records and
output, ``recovery`` takes back what a previous service left.
"""
