"""``python -m orcha``: the same entry point as the ``orcha`` command."""

from orcha.cli.main import main

if __name__ == "__main__":
    main()
