"""orcha's first-party plugins, registered through the ``orcha.plugins`` entry points
exactly as third-party plugins are.

* ``hello``: ``orcha send ID --counter N`` prints "Hello world! 0" ... "Hello world! N-1";
* ``shell``: ``orcha run ID -- CMD [ARG...]`` runs a command on the service host.

Each declares its command in a module of its own (``hello_command``, ``shell_command``)
that imports neither click nor the plugin machinery, so that ``orcha``'s fast path can
read it; this package itself imports nothing either.
"""


def __getattr__(name: str) -> object:
    if name == "FirstPartyPlugin":  # where it was before the command modules came
        from orcha_plugins.base import FirstPartyPlugin

        return FirstPartyPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
