"""Resolves where the service listens, where its key and state live, and the key itself.

Precedence, highest first: command-line options, environment variables
(``ORCHA_ADDRESS``, ``ORCHA_KEY``, ``ORCHA_RUNTIME_DIR``, ``ORCHA_STATE_DIR``), defaults
from platformdirs. The CLI calls :func:`configure` once; library code (``orcha.lib``)
calls :func:`current` so that plugins written for the original Orcha, which construct
their managers without arguments, follow the same options.
"""

from __future__ import annotations

import os

from orcha import defaults
from orcha.address import Address, check_text_path, parse_address
from orcha.errors import ConfigError

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from orcha.config import Config


class Settings:
    """Where to listen or connect, and with which key. Immutable once resolved.

    (A plain class rather than a dataclass: every client imports this module, and the
    dataclasses machinery costs more start-up time than a short petition takes.)
    """

    __slots__ = (
        "address",
        "aging",
        "backfill_bound",
        "gpus",
        "grace",
        "key_override",
        "log_cap",
        "max_running",
        "runtime_dir",
        "sources",
        "state_dir",
        "verbose",
    )
    address: Address
    runtime_dir: str
    state_dir: str
    key_override: bytes | None
    grace: float
    log_cap: int
    max_running: int | None
    verbose: int
    gpus: tuple[str, ...] | None
    aging: float
    backfill_bound: float
    sources: dict[str, str]

    def __init__(
        self,
        address: Address,
        runtime_dir: str,
        state_dir: str,
        key_override: bytes | None = None,
        grace: float = defaults.DEFAULT_GRACE,
        max_running: int | None = None,
        verbose: int = 0,
        log_cap: int = defaults.DEFAULT_LOG_CAP,
        gpus: tuple[str, ...] | None = None,
        aging: float = defaults.DEFAULT_AGING,
        backfill_bound: float = defaults.DEFAULT_BACKFILL_BOUND,
        sources: dict[str, str] | None = None,
    ) -> None:
        """``gpus``: the GPU inventory (None: discover with nvidia-smi); ``sources``:
        where :func:`resolve` found the address, the key and the configuration file, in
        words (what ``-v`` prints)."""
        set_ = object.__setattr__
        set_(self, "address", address)
        set_(self, "runtime_dir", runtime_dir)
        set_(self, "state_dir", state_dir)
        set_(self, "key_override", key_override)
        set_(self, "grace", grace)
        set_(self, "max_running", max_running)
        set_(self, "verbose", verbose)
        set_(self, "log_cap", log_cap)
        set_(self, "gpus", gpus)
        set_(self, "aging", aging)
        set_(self, "backfill_bound", backfill_bound)
        set_(self, "sources", dict(sources or {}))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Settings are immutable; resolve() new ones")

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{n}={getattr(self, n)!r}"
            for n in self.__slots__
            if n not in ("key_override", "sources")
        )
        return f"Settings({fields})"

    @property
    def key_file(self) -> str:
        return os.path.join(self.state_dir, defaults.KEY_FILE_NAME)

    def client_key(self) -> bytes | None:
        """The key a client presents: the override, else the key file's content, else None.

        ConfigError if the key file can be read or written by others or belongs to another
        user (as ssh refuses such a private key): a key others can read is no secret."""
        if self.key_override is not None:
            return self.key_override
        try:
            with open(self.key_file, "rb") as f:
                _check_key_file(self.key_file, os.fstat(f.fileno()))
                return f.read().strip() or None
        except OSError:
            return None

    def service_key(self) -> bytes:
        """The key the service demands: the override, else the key file (created 0600)."""
        if self.key_override is not None:
            return self.key_override
        existing = self.client_key()
        if existing:
            return existing
        import secrets

        _private_dir(self.state_dir)
        key = secrets.token_hex(defaults.KEY_BYTES).encode()
        # O_EXCL: if another service created the file first, use its key instead.
        try:
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            existing = self.client_key()
            if existing:
                return existing
            raise ConfigError(
                f"key file {self.key_file} is empty; delete it and start again"
            ) from None
        except OSError as e:
            raise ConfigError(f"cannot create key file {self.key_file}: {e.strerror}") from e
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
        return key


def _check_key_file(path: str, st: os.stat_result) -> None:
    """ConfigError, saying how to fix it, unless ``st`` is a key file only its user (we)
    can read and write."""
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"the key file {path} is owned by another user (uid {st.st_uid}); remove it "
            "(the service makes a new one) or give the key with --key or ORCHA_KEY"
        )
    mode = st.st_mode & 0o777
    if mode & 0o066:  # execute bits on a key file are harmless
        what = "readable" if mode & 0o044 else "writable"
        whom = "others" if mode & 0o007 else "its group"
        raise ConfigError(
            f"the key file {path} is {what} by {whom} (mode {mode:04o}); run 'chmod 600 {path}'"
        )


def _platform_dir(kind: str) -> str:
    # platformdirs' answer, without importing it where that can be spared: see
    # orcha.platform_dirs (imported here: only needed when no override is set).
    from orcha import platform_dirs

    if kind == "runtime":
        return platform_dirs.runtime_dir()
    return platform_dirs.state_dir()


def _make_dir(path: str, advice: str) -> str:
    """Create ``path`` (mode 0700) if missing; ConfigError if it cannot be (a file in its
    place: ``advice`` says what to do about it)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:  # "File exists": but it is not a directory
        raise ConfigError(
            f"cannot create directory {path}: a file of that name is there; {advice}"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot create directory {path}: {e.strerror}") from e
    return path


def _private_dir(path: str, advice: str = "move it or choose another directory") -> str:
    """Create ``path`` (mode 0700) if missing; refuse one that others may write to, or
    a file in its place (``advice``: what to do about that file)."""
    import stat

    _make_dir(path, advice)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"cannot create directory {path}: {e.strerror}") from e
    if st.st_uid != os.getuid():
        raise ConfigError(f"directory {path} belongs to another user; choose another one")
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as e:
            raise ConfigError(f"cannot make {path} private (mode 0700): {e.strerror}") from e
    return path


def ensure_state_dir(settings: Settings) -> None:
    """Create the state directory (0700) that holds the key, the database and the logs."""
    _private_dir(settings.state_dir)


def ensure_logs_dir(settings: Settings) -> str:
    """Create the folder (0700) of the petitions' output logs in the state directory, if
    missing; ConfigError if it cannot be (a file of that name is there: move it aside).
    One that is there is taken as it is (a link to another disk, say, whose mode is not
    ours to change): the state directory around it is private already."""
    return _make_dir(os.path.join(settings.state_dir, defaults.LOGS_DIR_NAME), "move it aside")


def ensure_runtime_dir(settings: Settings) -> None:
    """Create the runtime directory (0700) that holds the unix socket."""
    _private_dir(settings.runtime_dir)


def resolve(
    address: str | None = None,
    key: str | None = None,
    grace: float | None = None,
    max_running: int | None = None,
    verbose: int = 0,
    log_cap: int | None = None,
    gpus: tuple[str, ...] | None = None,
    aging: float | None = None,
    backfill_bound: float | None = None,
    config: Config | None = None,
) -> Settings:
    """Build Settings from explicit values, then the environment, then the configuration
    file (``config``, else the one :func:`orcha.config.config_path` names, if it exists),
    then defaults. ConfigError if the file is invalid."""
    for name, value in (("address", address), ("key", key)):
        if value is not None and not isinstance(value, str):  # from Python: a caller's slip
            raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    if config is None:
        config = _config_if_any()
    if config is not None and config.exists:
        if max_running is None:
            max_running = config.data.get("max_running")
        if grace is None and config.given("grace"):
            grace = float(config.data["grace"])
        if log_cap is None and config.given("log_cap"):
            log_cap = config.size("log_cap")
        if gpus is None and config.given("gpus"):
            gpus = config.gpus()
        if aging is None and config.given("aging"):
            aging = config.seconds("aging")
        if backfill_bound is None and config.given("backfill_bound"):
            backfill_bound = config.seconds("backfill_bound")
    runtime_dir = os.environ.get(defaults.ENV_RUNTIME_DIR) or _platform_dir("runtime")
    state_dir = os.environ.get(defaults.ENV_STATE_DIR) or _platform_dir("state")
    for var, path, name in ((defaults.ENV_RUNTIME_DIR, runtime_dir, "runtime"),
                            (defaults.ENV_STATE_DIR, state_dir, "state")):  # fmt: skip
        what = var if os.environ.get(var) else f"the {name} directory"
        check_text_path(path, what, f"choose a directory whose path is UTF-8 with {var}")
    sources: dict[str, str] = {}
    addr, sources["address"] = resolve_address(address, config, runtime_dir)
    if key is not None:
        sources["key"] = "--key"
    elif os.environ.get(defaults.ENV_KEY) is not None:
        key, sources["key"] = os.environ[defaults.ENV_KEY], defaults.ENV_KEY
    else:
        sources["key"] = "the key file"
    if key is not None and not key:
        raise ConfigError("the key is empty; give a non-empty --key or ORCHA_KEY")
    if config is not None:
        sources["config"] = config.path if config.exists else f"{config.path} (absent)"
    else:
        from orcha.config import config_path

        sources["config"] = f"{config_path()[0]} (absent)"
    return Settings(
        address=addr,
        runtime_dir=runtime_dir,
        state_dir=state_dir,
        # The bytes the user gave: Python reads a byte that is not UTF-8 as a surrogate.
        key_override=key.encode("utf-8", "surrogateescape") if key is not None else None,
        grace=defaults.DEFAULT_GRACE if grace is None else grace,
        max_running=max_running,
        verbose=verbose,
        log_cap=defaults.DEFAULT_LOG_CAP if log_cap is None else log_cap,
        gpus=gpus,
        aging=defaults.DEFAULT_AGING if aging is None else aging,
        backfill_bound=(
            defaults.DEFAULT_BACKFILL_BOUND if backfill_bound is None else backfill_bound
        ),
        sources=sources,
    )


def resolve_address(
    address: str | None, config: Config | None, runtime_dir: str
) -> tuple[Address, str]:
    """The service's address and where it came from, in words: ``address`` (given with
    --address), else ``ORCHA_ADDRESS``, else the configuration file's, else the socket in
    ``runtime_dir``. ConfigError if the one chosen is invalid."""
    if address:
        return parse_address(address), "--address"
    if os.environ.get(defaults.ENV_ADDRESS):
        return parse_address(os.environ[defaults.ENV_ADDRESS]), defaults.ENV_ADDRESS
    if config is not None and config.exists and config.data.get("address"):
        return parse_address(config.data["address"]), "the configuration file"
    where = defaults.ENV_RUNTIME_DIR if os.environ.get(defaults.ENV_RUNTIME_DIR) else None
    return (
        parse_address(os.path.join(runtime_dir, defaults.SOCKET_NAME)),
        f"default: the socket in {where or 'the runtime directory'}",
    )


def _config_if_any() -> Config | None:
    """The configuration file if one is named or the default one exists (a client
    without one imports no YAML parser)."""
    from orcha.config import config_path, load

    path, named = config_path()
    if not named and not os.path.exists(path):
        return None
    return load()


_current: Settings | None = None


def configure(settings: Settings) -> None:
    """Make ``settings`` what :func:`current` returns for the rest of this process."""
    global _current
    _current = settings


def current() -> Settings:
    """The settings configured by the CLI, or resolved from environment and defaults."""
    global _current
    if _current is None:
        _current = resolve()
    return _current
