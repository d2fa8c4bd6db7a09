"""What the service and its clients share: addresses, the wire protocol and its transport.

Nothing outside this package touches ``multiprocessing.connection`` or
``multiprocessing.managers`` directly.
"""
