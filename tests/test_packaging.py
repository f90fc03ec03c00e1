"""jaxseq as a PyPI library: `python -m build` makes an sdist and a wheel that `twine check`
passes, and the wheel, installed into a fresh virtual environment, works outside the
repository.

The wheel is built from a copy of the checkout (the build's egg-info and build folders stay
out of the repository), sdist first and the wheel from the sdist, as a release would. The
fresh environment gets no dependencies from an index: a `.pth` file makes this
interpreter's site-packages (jax, flax, ...) visible after its own, and the wheel is
installed with `--no-deps --no-index`. Everything there runs from a temporary folder.

`jaxseq bench` stays a tool of the repository: the benchmarks time PyTorch and Flax (not
dependencies of the package) and write the committed tables in benchmarks/results/, so an
installed jaxseq says in one line that it needs a checkout.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

import jaxseq

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = REPOSITORY / "jaxseq"
REPOSITORY_ONLY = ("benchmarks", "tests", "notebooks", "conftest")  # top-level names only a checkout has
BUILD_IGNORED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "site",
                                       ".pytest_cache", ".hypothesis", ".mypy_cache", "bench-output",
                                       "demo-output", "checkpoints")


def _run(command: list, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _check(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _copy_checkout(target: Path) -> None:
    """The checkout's files as a release would see them: git's tracked and unignored files,
    or (no git) the folder without its build outputs and caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPOSITORY, capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(REPOSITORY, target, ignore=BUILD_IGNORED)
        return
    for name in listed.stdout.decode().split("\0"):
        source = REPOSITORY / name
        if name and source.is_file():  # a tracked file deleted in the work tree is skipped
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _clean_env() -> dict:
    """The environment for the fresh venv's processes: nothing that points back at the checkout
    or at this interpreter's environment."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict:
    """{'sdist': path, 'wheel': path} built by `python -m build` from a copy of the checkout."""
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.fail("the `build` package is missing: install the dev extra (pip install -e '.[dev]')")
    source = tmp_path_factory.mktemp("source")
    _copy_checkout(source)
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: setuptools from this environment, nothing downloaded
    _check(_run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], cwd=source),
           "python -m build")
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"expected one sdist and one wheel, got {sorted(out.iterdir())}"
    return {"sdist": sdists[0], "wheel": wheels[0]}


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> dict:
    """A fresh venv (no pip of its own) with the wheel installed, jaxseq's dependencies seen
    through a .pth file; 'python', 'jaxseq' (the console script), 'site' (its site-packages),
    'cwd' (an empty folder outside the checkout), 'env'."""
    venv = tmp_path_factory.mktemp("venv")
    _check(_run([sys.executable, "-m", "venv", "--without-pip", "--clear", venv], cwd=venv), "python -m venv")
    python = venv / "bin" / "python"
    site = Path(_check(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            cwd=venv, env=_clean_env()), "sysconfig").stdout.strip())
    # added after the venv's own site-packages: the installed jaxseq comes first. Only the folder
    # goes on sys.path; the .pth files inside it (the checkout's editable install) are not run.
    (site / "dependencies-of-the-test-interpreter.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _check(_run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
                 "--disable-pip-version-check", "--quiet", dists["wheel"]], cwd=venv, env=_clean_env()),
           "pip install the wheel")
    cwd = tmp_path_factory.mktemp("elsewhere")
    assert not cwd.resolve().is_relative_to(REPOSITORY)
    return {"python": python, "jaxseq": venv / "bin" / "jaxseq", "site": site, "cwd": cwd, "env": _clean_env()}


def test_one_version_jaxseq_version(dists):
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "jaxseq.__version__"}
    for path in dists.values():
        assert path.name.startswith(f"jaxseq-{jaxseq.__version__}"), \
            f"{path.name} does not carry jaxseq.__version__ {jaxseq.__version__}"


def test_twine_check_passes(dists):
    pytest.importorskip("twine", reason="twine is in the dev extra; without it the metadata check is skipped")
    result = _run([sys.executable, "-m", "twine", "check", "--strict", dists["sdist"], dists["wheel"]],
                  cwd=dists["wheel"].parent)
    _check(result, "twine check --strict")
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_holds_the_package_with_its_data_and_nothing_else(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    dist_info = f"jaxseq-{jaxseq.__version__}.dist-info/"
    strays = [name for name in names if not name.startswith(("jaxseq/", dist_info))]
    assert not strays, f"the wheel holds files outside the package: {strays[:10]}"
    # every file of the package, .py or data read at run time (py.typed: PEP 561), is in it
    package_files = {f"jaxseq/{path.relative_to(PACKAGE).as_posix()}" for path in PACKAGE.rglob("*")
                     if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}
    assert "jaxseq/py.typed" in package_files
    assert not package_files - set(names), f"package files missing from the wheel: {sorted(package_files - set(names))}"
    assert f"{dist_info}licenses/LICENSE" in names
    entry_points = zipfile.ZipFile(dists["wheel"]).read(f"{dist_info}entry_points.txt").decode()
    assert "jaxseq = jaxseq.cli:entry_point" in entry_points  # the process keeps freed memory (test_process_memory)


def test_sdist_holds_the_package_not_the_repository_tools(dists):
    with tarfile.open(dists["sdist"]) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    top = {name.split("/", 1)[0] for name in names}
    assert {"jaxseq", "pyproject.toml", "README.md", "LICENSE"} <= top, sorted(top)
    assert not top & {"tests", "benchmarks", "notebooks", "docs"}, sorted(top)


def _repository_imports(source: str) -> list[str]:
    """The imports in `source` of modules only a checkout has, and any sys.path edits."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] in REPOSITORY_ONLY]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in REPOSITORY_ONLY:
                found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            found.append(f"sys.path (line {node.lineno})")
    return found


def test_repository_import_scan_finds_what_it_looks_for():
    assert _repository_imports("import benchmarks.speed\nfrom tests.conftest import x\nimport sys\n"
                               "sys.path.insert(0, '..')\nimport jax") == ["benchmarks.speed", "tests.conftest",
                                                                           "sys.path (line 4)"]


def test_wheel_imports_nothing_from_the_repository(dists):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        found = {name: _repository_imports(wheel.read(name).decode()) for name in wheel.namelist()
                 if name.endswith(".py")}
    assert not {name: hits for name, hits in found.items() if hits}


INSTALLED_CHECK = textwrap.dedent("""
    import importlib.metadata, importlib.resources, sys
    from pathlib import Path

    import jax, jax.numpy as jnp, numpy as np
    import jaxseq
    from jaxseq import layers
    from jaxseq.nn import LSTM

    site, repository = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    assert Path(jaxseq.__file__).resolve().is_relative_to(site), f"jaxseq from {jaxseq.__file__}"
    assert jaxseq.__version__ == importlib.metadata.version("jaxseq"), jaxseq.__version__
    assert importlib.resources.files("jaxseq").joinpath("py.typed").is_file()

    # a layer: jax.grad through the custom_vjp runs the hand-written rnn_backward
    # (NumPy inputs: eager jax.random calls would each compile, seconds in all)
    rng = np.random.default_rng(0)
    N, T, D, H = 2, 3, 4, 5
    args = tuple(jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((N, T, D), (N, H), (D, H), (H, H), (H,)))
    dh = jnp.asarray(rng.standard_normal((N, T, H)), jnp.float32)
    h, cache = layers.rnn_forward(*args)
    assert h.shape == (N, T, H)
    grads = jax.grad(lambda *a: jnp.sum(layers.rnn(*a) * dh), argnums=tuple(range(5)))(*args)
    for auto, hand in zip(grads, layers.rnn_backward(dh, cache)):
        assert jnp.allclose(auto, hand, rtol=1e-5, atol=1e-6)

    # the LSTM's compiled CPU loops, built from the source the wheel ships (jaxseq.kernels)
    from jaxseq.kernels import lstm as compiled
    assert importlib.resources.files("jaxseq").joinpath("kernels/lstm_cpu.cc").is_file()
    Wx4, Wh4, b4 = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((D, 4 * H), (H, 4 * H), (4 * H,)))
    lstm_grad = jax.jit(jax.grad(lambda Wh: jnp.sum(layers.lstm(args[0], args[1], Wx4, Wh, b4) ** 2)))
    assert compiled.FORWARD_TARGET in lstm_grad.lower(Wh4).as_text()
    assert bool(jnp.all(jnp.isfinite(lstm_grad(Wh4))))
    # and the GRU's, from its source and the header both include
    from jaxseq.kernels import gru as compiled_gru
    assert importlib.resources.files("jaxseq").joinpath("kernels/cpu_loops.h").is_file()
    Wx3, Wh3, b3 = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((D, 3 * H), (H, 3 * H), (3 * H,)))
    gru_grad = jax.jit(jax.grad(lambda Wh: jnp.sum(layers.gru(args[0], args[1], Wx3, Wh, b3, b3) ** 2)))
    assert compiled_gru.FORWARD_TARGET in gru_grad.lower(Wh3).as_text()
    assert bool(jnp.all(jnp.isfinite(gru_grad(Wh3))))

    # a jaxseq.nn module
    lstm = LSTM(hidden_size=H)
    out, (h_n, c_n) = lstm.apply(lstm.init(jax.random.key(1), args[0]), args[0])
    assert out.shape == (N, T, H) and h_n.shape == c_n.shape == (1, N, H)

    # the checkout's own files (a .venv inside the checkout holds the dependencies: not those)
    from_repository = sorted(name for name, module in list(sys.modules.items())
                             if getattr(module, "__file__", None)
                             and Path(module.__file__).resolve().is_relative_to(repository)
                             and "site-packages" not in Path(module.__file__).resolve().parts)
    assert not from_repository, from_repository
    # the dev extra's packages are visible here (the .pth), but a user's `pip install jaxseq` lacks them
    dev_only = sorted({"torch", "pytest", "hypothesis", "pandas"} & set(sys.modules))
    assert not dev_only, f"importing jaxseq, its layers and nn loaded {dev_only}, which are not its dependencies"
    print("installed jaxseq", jaxseq.__version__, "works")
""")


def test_installed_wheel_runs_outside_the_checkout(installed):
    script = installed["cwd"] / "check_installed.py"
    script.write_text(INSTALLED_CHECK)
    result = _check(_run([installed["python"], script, installed["site"], REPOSITORY], cwd=installed["cwd"],
                         env=installed["env"]), "the installed package's check")
    assert f"installed jaxseq {jaxseq.__version__} works" in result.stdout


def test_installed_console_script(installed):
    run = lambda *args: _run([installed["jaxseq"], *args], cwd=installed["cwd"], env=installed["env"])  # noqa: E731
    help_text = _check(run("--help"), "jaxseq --help").stdout
    for command in ("caption", "classify", "cola", "lm", "demo", "bench", "plot"):
        assert command in help_text, f"jaxseq --help does not list {command}"
    assert _check(run("--version"), "jaxseq --version").stdout.strip() == f"jaxseq {jaxseq.__version__}"
    # the benchmarks are the repository's: one clear line, no traceback
    bench = run("bench", "--quick")
    assert bench.returncode == 2, (bench.returncode, bench.stderr)
    assert "Traceback" not in bench.stderr and len(bench.stderr.strip().splitlines()) == 1, bench.stderr
    assert "checkout of the jaxseq repository" in bench.stderr
