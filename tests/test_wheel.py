"""The wheel: built by maturin, installed into a fresh virtual environment, used there.

``scripts/test.sh`` builds the wheel, installs it into a fresh venv and runs this
whole suite with that venv's Python, naming the wheel in ``ZSWAP_RS_WHEEL``; the
tests here check that what was imported really is the installed wheel, not the
source tree. Run alone (no ``ZSWAP_RS_WHEEL``), they build and install a wheel
themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = """
import sys, zswap_rs
assert "site-packages" in zswap_rs.__file__, zswap_rs.__file__
with zswap_rs.Zswap(max_pool_bytes=1 << 20) as z:
    t = z.swapon(None, pages=8)
    page = (b"zswap in a fresh venv " * 200)[:4096]
    assert z.store(t, 3, page) is zswap_rs.StoreOutcome.STORED
    assert z.load(t, 3) == page
    assert z.stats()["stored_pages"] == 1
print("ok", zswap_rs.__version__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("ZSWAP_RS_WHEEL")
    if named:
        return Path(named)
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        ["maturin", "build", "--release", "-o", str(out)], cwd=ROOT, check=True, capture_output=True
    )
    (built,) = out.glob("zswap_rs-*.whl")
    return built


def test_wheel_is_abi3_and_carries_the_package(wheel: Path) -> None:
    assert "-cp311-abi3-" in wheel.name, wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    for member in ("__init__.py", "cli/__init__.py", "py.typed", "_zswap_rs.pyi"):
        assert f"zswap_rs/{member}" in names, member
    assert any(n.startswith("zswap_rs/_zswap_rs.") and n.endswith(".so") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode().replace(" ", "")
    assert "zswap-rs=zswap_rs.cli:main" in scripts


def test_fresh_venv_imports_and_uses_it(wheel: Path, tmp_path: Path) -> None:
    if os.environ.get("ZSWAP_RS_WHEEL"):
        # This interpreter is already the fresh venv with the wheel installed.
        python = Path(sys.executable)
        assert sys.prefix != sys.base_prefix, "scripts/test.sh runs the suite in a venv"
    else:
        env_dir = tmp_path / "venv"
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True
        )
    # -I: isolated, so neither the cwd nor PYTHONPATH can put the source tree first.
    run = subprocess.run(
        [str(python), "-I", "-c", SMOKE], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok ")
    cli = Path(python).parent / "zswap-rs"
    info = subprocess.run([str(cli), "info"], cwd=tmp_path, capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "lz4" in info.stdout


def test_this_suite_runs_against_the_installed_wheel() -> None:
    if not os.environ.get("ZSWAP_RS_WHEEL"):
        pytest.skip("only meaningful under scripts/test.sh, which installs the wheel first")
    import zswap_rs

    assert not Path(zswap_rs.__file__).is_relative_to(ROOT / "python"), zswap_rs.__file__


def test_wheel_is_manylinux_with_its_libraries_inside(wheel: Path) -> None:
    """SPEC.md, Distribution: manylinux compliant, ISA-L linked in (no .so to find)."""
    auditwheel = pytest.importorskip("auditwheel", reason="pip install auditwheel")
    del auditwheel
    run = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    assert "manylinux_" in text, text
    # Static linking: the extension needs only system libraries (libc & co).
    for lib in ("libisal", "libzstd", "liblzo2", "libz.so"):
        assert lib not in text, text
