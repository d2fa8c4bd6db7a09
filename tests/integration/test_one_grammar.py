"""One grammar: ``orcha run`` on the fast path and through click agree, including on
plugins the configuration file disables (issue 11: the fast path used to ignore it)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Env, Service
from tests.integration.clients import new_id, orcha

NO_SUCH_RUN = "orcha: no command 'run'; disabled plugins may provide it (shell; see 'orcha ls')"
FORMS = (("--",), ("--timeout", "5", "--"))  # the fast form, and one with a petition option


def _config(env: Env, shell_enabled: bool) -> Path:
    path = env.config_dir / "orcha" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"plugins:\n  shell:\n    enabled: {str(shell_enabled).lower()}\n")
    return path


def _imports(env: Env, *args: str) -> tuple[int, str]:
    """Run ``orcha ARGS`` with Python's import log on stderr: (exit code, stderr)."""
    result = env.run(*args, env={"PYTHONPROFILEIMPORTTIME": "1"}, timeout=30)
    return result.returncode, result.stderr


def _imported(stderr: str, module: str) -> bool:
    return any(line.rsplit("|", 1)[-1].strip() == module for line in stderr.splitlines())


def test_both_forms_run_while_the_shell_plugin_is_enabled(env: Env, service: Service) -> None:
    _config(env, shell_enabled=True)
    for _ in range(2):  # the first may go through click, which notes the commands
        for form in FORMS:
            assert orcha(env, "run", new_id("on"), *form, "echo", "hi") == ("hi\n", "")
    code, stderr = _imports(env, "run", new_id("fast"), "--", "true")
    assert code == 0, stderr
    assert not _imported(stderr, "click")  # the plain form took the fast path


def test_the_fast_path_loads_nothing_heavy(env: Env, service: Service) -> None:
    """A real ``orcha run`` on the fast path (no configuration file): none of the modules
    whose start-up cost issue 14 measured (tests/unit/test_fast.py has the full list;
    ``python -m`` itself loads functools and collections, the installed command not)."""
    orcha(env, "run", new_id("noted"), "--", "true")
    code, stderr = _imports(env, "run", new_id("lean"), "--", "true")
    assert code == 0, stderr
    # Only what orcha loads: an editable install's finder loads re and enum in site.
    lines = stderr.splitlines()
    ours = "\n".join(lines[[line.rsplit("|", 1)[-1].strip() for line in lines].index("site") :])
    heavy = ("click", "re", "enum", "typing", "socket", "selectors", "signal", "_hashlib",
             "json", "yaml")  # fmt: skip
    assert [m for m in heavy if _imported(ours, m)] == [], ours


def test_both_forms_are_no_such_command_once_the_config_disables_shell(
    env: Env, service: Service
) -> None:
    for form in FORMS:  # the fast path knows 'run' (click has noted it)...
        orcha(env, "run", new_id("before"), *form, "true")
    _config(env, shell_enabled=False)  # ...and then the configuration disables its plugin
    for _ in range(2):
        for form in FORMS:
            _, stderr = orcha(env, "run", new_id("off"), *form, "true", code=2)
            assert NO_SUCH_RUN in stderr
    _config(env, shell_enabled=True)
    for form in FORMS:
        assert orcha(env, "run", new_id("again"), *form, "echo", "back") == ("back\n", "")


def test_the_environment_disables_the_fast_command_too(env: Env, service: Service) -> None:
    orcha(env, "run", new_id("noted"), "--", "true")
    for form in FORMS:
        _, stderr = orcha(env, "run", new_id("env"), *form, "true", code=2,
                          extra={"ORCHA_DISABLE_PLUGINS": "shell"})  # fmt: skip
        assert NO_SUCH_RUN in stderr
