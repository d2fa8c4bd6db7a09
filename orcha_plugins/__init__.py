"""orcha's first-party plugins, registered through the ``orcha.plugins`` entry points
exactly as third-party plugins are.

* ``hello``: ``orcha send ID --counter N`` prints "Hello world! 0" ... "Hello world! N-1";
* ``shell``: ``orcha run ID -- CMD [ARG...]`` runs a command on the service host.
"""
