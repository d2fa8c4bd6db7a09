"""The ``orcha`` command line."""
