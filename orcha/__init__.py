"""orcha: a local orchestrator for heavy jobs on a shared host.

This package is imported by every client invocation, so it imports nothing.
"""

__version__ = "0.1.0"
