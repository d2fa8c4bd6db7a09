from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

_Path = str | bytes | PathLike[str] | PathLike[bytes]

def available() -> bool: ...
def spawn(
    paths: Sequence[_Path],
    argv: Sequence[_Path],
    env: Mapping[Any, Any] | list[bytes] | tuple[list[bytes], Mapping[Any, Any]],
    cwd: _Path | None,
    cgroup: int,
    stdin: int,
    stdout: int,
    stderr: int,
    /,
) -> int: ...
