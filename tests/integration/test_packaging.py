"""Release hygiene (issue 6): ``python -m build`` makes an sdist and, from it, a wheel;
both install cleanly in a fresh venv and run the demo from there; the version lives in
one place; the package ships ``py.typed``.

No network: the build runs ``--no-isolation`` with this interpreter, on a copy of the
checkout's files (``git ls-files``) so that no ``build/`` or ``*.egg-info`` lands in the
repository, and pip installs with ``--no-index --no-deps``. orcha's runtime dependencies
reach the fresh venv through a ``.pth`` file naming a directory of links to exactly those
distributions of this test's environment (plus setuptools and wheel, to build the sdist),
appended after the venv's own site-packages. Nothing else of the development environment
is visible there: not its editable orcha, not the plugins other tests installed.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import Env

pytest.importorskip("build", reason="'python -m build' needs the 'build' package")

REPO = Path(__file__).resolve().parents[2]
# Any one build, venv, pip or demo run: each takes a few seconds, but a build took over
# 60 s on a loaded 2-core machine (the whole suite beside three others at work): a bound
# against a hang, not a speed check.
STEP_TIMEOUT = 240.0
# pytest-timeout's bound of a test (120 s) covers the module's build too, made in the setup
# of its first test: here, each step has its own bound.
pytestmark = pytest.mark.timeout(4 * STEP_TIMEOUT)
PACKAGES = ("orcha", "orcha_plugins")  # the import packages the distribution ships
BUILD_REQUIREMENTS = ("setuptools", "wheel")  # to install the sdist --no-build-isolation
# Environment variables that would let the fresh venv see the development checkout, or
# pip see an index or a configuration other than the test's.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


@dataclass(frozen=True)
class Dists:
    """What one ``python -m build`` made, and the source tree it made it from."""

    source: Path
    files: tuple[str, ...]  # the files copied into ``source``, relative to it
    sdist: Path
    wheel: Path

    @property
    def version(self) -> str:
        """``orcha.__version__`` as the source tree states it."""
        tree = ast.parse((self.source / "orcha" / "__init__.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
            ):
                return str(ast.literal_eval(node.value))
        raise AssertionError("orcha/__init__.py does not assign __version__")

    def package_files(self) -> set[str]:
        """The source tree's files that belong to the import packages."""
        return {f for f in self.files if f.split("/", 1)[0] in PACKAGES}


@dataclass(frozen=True)
class Venv:
    """A fresh virtual environment with orcha installed in it."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"


def _isolated(environ: dict[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in environ.items() if k not in LEAKY and not k.startswith(("PIP_", "ORCHA_"))
    }
    env.update(PYTHONNOUSERSITE="1", PIP_CONFIG_FILE=os.devnull)
    return env


def _run(
    argv: list[str | Path],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = STEP_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run to completion; fail the test with the output if it exits non-zero."""
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_isolated(dict(os.environ)) if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"{argv} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done


def _requirements(names: Iterable[str]) -> list[importlib.metadata.Distribution]:
    """These distributions of the test's environment and everything they need to run."""
    from packaging.requirements import Requirement  # a dependency of 'build'
    from packaging.utils import canonicalize_name

    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        dist = importlib.metadata.distribution(name)
        found[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _link_distributions(dists: Iterable[importlib.metadata.Distribution], into: Path) -> None:
    """Make ``into`` a site directory holding links to exactly these distributions: their
    top-level modules and packages and their metadata."""
    into.mkdir()
    for dist in dists:
        assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD"
        tops = {f.parts[0] for f in dist.files}
        for top in sorted(tops):
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue  # scripts, bytecode, and start-up hooks orcha does not need
            target = Path(str(dist.locate_file(top)))
            link = into / top
            if target.exists() and not link.exists():
                link.symlink_to(target)


def _wheel_requirements(wheel: Path) -> list[str]:
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(f"{_dist_info(wheel)}/METADATA").decode()
    names = []
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.partition(":")[2].strip())
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                names.append(req.name)
    return names


def _dist_info(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def _make_venv(root: Path, site_dirs: Iterable[Path]) -> Venv:
    """A fresh venv (with pip) that also sees ``site_dirs``, after its own site-packages."""
    _run([sys.executable, "-m", "venv", root], cwd=root.parent)
    venv = Venv(root)
    (Path(_purelib(venv)) / "_orcha_test_deps.pth").write_text("".join(f"{d}\n" for d in site_dirs))
    return venv


def _purelib(venv: Venv) -> str:
    """The venv's site-packages."""
    return _run(
        [venv.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=venv.root,
    ).stdout.strip()


def _pip_install(venv: Venv, *args: str | Path, env: dict[str, str] | None = None) -> None:
    _run(
        [
            venv.python,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            *args,
        ],
        cwd=venv.root,
        env=None if env is None else _isolated({**os.environ, **env}),
    )


def _processes_mentioning(*roots: Path) -> list[psutil.Process]:
    mine = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.pid != mine and any(str(r) in arg for r in roots for arg in cmdline):
            found.append(proc)
    return found


def _assert_nothing_left(*roots: Path) -> None:
    """Fail if a process whose command line names one of ``roots`` still runs (after
    killing it)."""
    left = [p for p in _processes_mentioning(*roots) if p.status() != psutil.STATUS_ZOMBIE]
    described = []
    for proc in left:
        try:
            described.append((proc.pid, proc.cmdline()))
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=5)
    assert not described, f"processes left behind: {described}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(autouse=True)
def no_strays(workdir: Path) -> Iterator[None]:
    """No test here leaves a process behind: not the build, pip, the demo or its service."""
    yield
    _assert_nothing_left(workdir)


@pytest.fixture(scope="module")
def dists(workdir: Path) -> Dists:
    """The sdist and wheel ``python -m build`` makes of the checkout (built once)."""
    try:
        listed = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
            timeout=STEP_TIMEOUT,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing says which files are the source")
    source = workdir / "src"
    files = []
    for name in sorted(set(listed.decode().split("\0")) - {""}):
        original = REPO / name
        if original.is_file():
            copy = source / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(original.read_bytes())
            files.append(name)
    out = workdir / "dist"
    # Neither --sdist nor --wheel: build makes the sdist, then the wheel from the unpacked
    # sdist, so the wheel proves the sdist holds everything the package needs.
    _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source],
        cwd=workdir,
        env=dict(os.environ),
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(source=source, files=tuple(files), sdist=sdist, wheel=wheel)


@pytest.fixture(scope="module")
def site_dirs(workdir: Path, dists: Dists) -> dict[str, Path]:
    """Directories of links to this environment's distributions: ``runtime`` holds what
    the wheel requires (and what that requires), ``build`` what building the sdist needs."""
    links = workdir / "site"
    links.mkdir()
    runtime = _requirements(_wheel_requirements(dists.wheel))
    _link_distributions(runtime, links / "runtime")
    _link_distributions(_requirements(BUILD_REQUIREMENTS), links / "build")
    return {"runtime": links / "runtime", "build": links / "build"}


@pytest.fixture(scope="module")
def wheel_venv(workdir: Path, dists: Dists, site_dirs: dict[str, Path]) -> Venv:
    venv = _make_venv(workdir / "venv-wheel", [site_dirs["runtime"]])
    _pip_install(venv, dists.wheel)
    return venv


@pytest.fixture(scope="module")
def sdist_venv(workdir: Path, dists: Dists, site_dirs: dict[str, Path]) -> Venv:
    """Installed from the sdist on a machine without a C compiler (``CC=/bin/false``):
    the clone3 helper (orcha/service/_clone3.c) is optional, orcha installs without it.
    (The wheel, built with this machine's compiler where it has one, carries it.)"""
    venv = _make_venv(workdir / "venv-sdist", [site_dirs["runtime"], site_dirs["build"]])
    # The venv's own setuptools (bundled with Python) would shadow the linked one, which
    # pyproject.toml's [build-system] asks for.
    purelib = Path(_purelib(venv))
    for name in ("setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth"):
        for found in purelib.glob(f"{name}*"):
            if found.is_dir():
                shutil.rmtree(found)
            else:
                found.unlink()
    _pip_install(venv, "--no-build-isolation", dists.sdist, env={"CC": "/bin/false"})
    return venv


def _wheel_names(dists: Dists) -> set[str]:
    with zipfile.ZipFile(dists.wheel) as zf:
        return set(zf.namelist())


def _sdist_names(dists: Dists) -> set[str]:
    """The sdist's files, relative to its top directory (``orcha-X.Y.Z/``)."""
    top = dists.sdist.name.removesuffix(".tar.gz") + "/"
    with tarfile.open(dists.sdist) as tf:
        members = [m.name for m in tf.getmembers() if m.isfile()]
    assert all(m.startswith(top) for m in members), members
    return {m.removeprefix(top) for m in members}


def test_wheel_holds_the_packages_their_typing_marker_and_entry_points(dists: Dists) -> None:
    names = _wheel_names(dists)
    dist_info = _dist_info(dists.wheel)
    # Every file of the packages but C sources (built into their extension instead).
    installed = {f for f in dists.package_files() if not f.endswith(".c")}
    assert installed <= names, sorted(installed - names)
    assert not any(n.endswith(".c") for n in names)
    assert {"orcha/py.typed", "orcha_plugins/hello.py", "orcha_plugins/shell.py"} <= names
    # Only orcha's own packages: no tests, bench or docs installed as top-level packages;
    # and, as data files, the man pages (share/man/man1).
    data = dist_info.removesuffix(".dist-info") + ".data"
    assert {n.split("/", 1)[0] for n in names} == {*PACKAGES, dist_info, data}
    pages = {n for n in names if n.startswith(f"{data}/data/share/man/man1/")}
    assert {p.rsplit("/", 1)[1] for p in pages} == {
        p.name for p in (dists.source / "man" / "man1").glob("*.1")
    }
    assert {f"{data}/data/share/man/man1/{p}" for p in ("orcha.1", "orcha-run.1")} <= pages
    assert f"{dist_info}/LICENSE" in names or f"{dist_info}/licenses/LICENSE" in names

    with zipfile.ZipFile(dists.wheel) as zf:
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.optionxform = str  # type: ignore[assignment,method-assign]
        entry_points.read_string(zf.read(f"{dist_info}/entry_points.txt").decode())
    # The ``orcha`` command is a script of its own (bin/orcha), not a console-script
    # entry point: pip's wrapper for those imports ``re`` before orcha starts (issue 14).
    assert "console_scripts" not in entry_points
    with zipfile.ZipFile(dists.wheel) as zf:
        script = zf.read(f"{data}/scripts/orcha").decode()
    assert script.startswith("#!python\n"), script[:100]  # the installer writes its python
    assert "import re" not in script and "from orcha.cli.main import main" in script
    assert dict(entry_points["orcha.plugins"]) == {
        "hello": "orcha_plugins.hello:HelloPlugin",
        "shell": "orcha_plugins.shell:ShellPlugin",
    }
    required = {name.lower() for name in _wheel_requirements(dists.wheel)}
    assert required == {"click", "rich", "psutil", "platformdirs", "pyyaml"}


def test_sdist_holds_the_sources_license_and_readme(dists: Dists) -> None:
    names = _sdist_names(dists)
    assert dists.package_files() <= names, sorted(dists.package_files() - names)
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO", "orcha/py.typed"} <= names


def test_sdist_holds_the_changelog_docs_and_units(dists: Dists) -> None:
    names = _sdist_names(dists)
    assert {"CHANGELOG.md", "MANIFEST.in", "docs/conf.py", "docs/index.rst",
            "docs/_ext/orcha_docs.py", "systemd/orcha.service",
            "systemd/user/orcha.service", "man/man1/orcha.1"} <= names  # fmt: skip


def test_version_is_the_same_everywhere(dists: Dists, wheel_venv: Venv) -> None:
    version = dists.version
    assert dists.wheel.name.startswith(f"orcha-{version}-")
    assert dists.sdist.name == f"orcha-{version}.tar.gz"
    with zipfile.ZipFile(dists.wheel) as zf:
        metadata = zf.read(f"{_dist_info(dists.wheel)}/METADATA").decode()
    assert f"\nVersion: {version}\n" in metadata
    version_cli = _run([wheel_venv.bin / "orcha", "--version"], cwd=wheel_venv.root)
    assert version_cli.stdout.strip() == f"orcha {version}"
    changelog = (dists.source / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(version)}\]?(\s|$)", changelog, re.MULTILINE), (
        f"CHANGELOG.md has no '## {version}' heading"
    )


def test_version_has_one_source(dists: Dists) -> None:
    """``orcha/__init__.py`` states the version; packaging reads it from there, and no
    other module of the distribution spells it out."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((dists.source / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "orcha.__version__"}
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(dists.source / "setup.cfg")
    assert not setup_cfg.has_option("metadata", "version")
    literal = re.compile(rf"""["']{re.escape(dists.version)}["']""")
    spelled = [
        name
        for name in sorted(dists.package_files())
        if name.endswith(".py") and literal.search((dists.source / name).read_text())
    ]
    assert spelled == ["orcha/__init__.py"]


PROBE = """
import importlib.metadata, json, pathlib
import orcha, orcha_plugins, orcha.service.native
dist = importlib.metadata.distribution("orcha")
print(json.dumps({
    "orcha": orcha.__file__,
    "orcha_plugins": orcha_plugins.__file__,
    "py.typed": (pathlib.Path(orcha.__file__).parent / "py.typed").is_file(),
    "native": orcha.service.native.usable(),
    "version": orcha.__version__,
    "metadata_version": dist.version,
    "metadata_at": str(dist.locate_file("")),
    "plugins": {
        ep.name: ep.value for ep in importlib.metadata.entry_points(group="orcha.plugins")
    },
}))
"""


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installs_into_a_fresh_venv(
    kind: str, dists: Dists, request: pytest.FixtureRequest
) -> None:
    """The wheel, and the sdist pip builds, install an orcha that is imported from the
    fresh venv and finds its plugins there."""
    venv: Venv = request.getfixturevalue(f"{kind}_venv")
    root = venv.root.resolve()
    probe = json.loads(_run([venv.python, "-c", PROBE], cwd=venv.root).stdout)
    # The point of it all: the installed copy is imported, not the editable checkout.
    for package in PACKAGES:
        assert Path(probe[package]).resolve().is_relative_to(root), probe
    # The man pages land where man looks for a venv's commands (beside its bin folder).
    assert (venv.root / "share" / "man" / "man1" / "orcha-config-reload.1").is_file()
    assert Path(probe["metadata_at"]).resolve().is_relative_to(root), probe
    assert probe["py.typed"]
    # The clone3 helper: compiled into the wheel where this machine has a compiler; the
    # sdist, installed without one, works without it.
    assert probe["native"] is (kind == "wheel" and shutil.which("cc") is not None)
    assert probe["version"] == probe["metadata_version"] == dists.version
    assert probe["plugins"] == {
        "hello": "orcha_plugins.hello:HelloPlugin",
        "shell": "orcha_plugins.shell:ShellPlugin",
    }
    # The console script runs the fresh venv's interpreter, and finds the plugins there.
    script = (venv.bin / "orcha").read_text()
    assert script.startswith(f"#!{venv.python}\n"), script[:200]
    listed = json.loads(_run([venv.bin / "orcha", "ls", "--json"], cwd=venv.root).stdout)
    plugins = {p["name"]: p for p in listed["plugins"]}
    assert set(plugins) == {"hello", "shell"}, plugins
    assert not any(p["error"] for p in plugins.values()), plugins
    # The requirements the wheel declares are met by what the tests run against.
    _run([venv.python, "-m", "pip", "check", "--disable-pip-version-check"], cwd=venv.root)


def test_demo_runs_from_the_fresh_venv(wheel_venv: Venv, env: Env) -> None:
    """``python -m orcha.demo`` (the README's quick start) succeeds from the installed
    wheel, in private directories, and leaves neither processes nor files behind."""
    tmp = env.root / "tmp"  # the demo's own temporary directory lands here
    private = {
        "TMPDIR": tmp,
        "XDG_RUNTIME_DIR": env.root / "xdg-run",
        "XDG_STATE_HOME": env.root / "xdg-state",
        "XDG_DATA_HOME": env.root / "xdg-data",
        "XDG_CACHE_HOME": env.root / "xdg-cache",
    }
    for path in private.values():
        path.mkdir(mode=0o700)
    demo_env = _isolated(env.vars)
    demo_env.update({name: str(path) for name, path in private.items()})
    demo_env.update(
        XDG_CONFIG_HOME=str(env.config_dir),
        ORCHA_RUNTIME_DIR=str(env.runtime),  # the demo sets its own; these are a backstop
        ORCHA_STATE_DIR=str(env.state),
        PATH=f"{wheel_venv.bin}{os.pathsep}{demo_env.get('PATH', os.defpath)}",
    )
    try:
        demo = subprocess.run(
            [wheel_venv.python, "-m", "orcha.demo"],
            cwd=env.root,
            env=demo_env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )
    finally:
        _assert_nothing_left(wheel_venv.root, env.root)
    output = f"stdout:\n{demo.stdout}\nstderr:\n{demo.stderr}"
    assert demo.returncode == 0, output
    assert "orcha demo: all steps succeeded" in demo.stdout, output
    assert "Hello world! 2" in demo.stdout, output
    assert "├ hello" in demo.stdout and "└ shell" in demo.stdout, output  # from 'orcha ls'
    assert list(tmp.iterdir()) == [], "the demo left files in its temporary directory"
