"""The wheel: built by maturin, installed into a fresh virtual environment, used there.

``scripts/test.sh`` builds the wheel, installs it into a fresh venv and runs this
whole suite with that venv's Python, naming the wheel in ``ZSWAP_RS_WHEEL``; the
tests here check that what was imported really is the installed wheel, not the
source tree. Run alone (no ``ZSWAP_RS_WHEEL``), they build the portable wheel
(``scripts/build-wheels.sh``) and install it themselves. The source distribution
is checked here too: ``pip install`` of ``maturin sdist``'s tarball builds in a
fresh venv and works (SPEC.md, Distribution).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Every software compressor round-trips: the C ones (ISA-L's deflate, zstd) are
# what a portable or a source build can get wrong, the Rust ones come along.
SMOKE = """
import sys, zswap_rs
assert "site-packages" in zswap_rs.__file__, zswap_rs.__file__
page = (b"zswap in a fresh venv " * 200)[:4096]
for name in ("lzo", "lz4", "zstd", "deflate"):
    with zswap_rs.Zswap(compressor=name, max_pool_bytes=1 << 20) as z:
        t = z.swapon(None, pages=8)
        assert z.store(t, 3, page) is zswap_rs.StoreOutcome.STORED, name
        assert z.load(t, 3) == page, name
        assert 0 < z.stats()["compr_data_size"] < 4096, name
print("ok", zswap_rs.__version__)
"""
# The oldest glibc the wheel may need (manylinux2014): RHEL 7, Ubuntu 14.04, Amazon Linux 2.
GLIBC_MINOR_MAX = 17


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("ZSWAP_RS_WHEEL")
    if named:
        return Path(named)
    out = tmp_path_factory.mktemp("wheels")
    build = subprocess.run(
        [str(ROOT / "scripts" / "build-wheels.sh"), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    (built,) = out.glob("zswap_rs-*.whl")
    return built


def run_smoke(python: Path, cwd: Path) -> None:
    """SMOKE and the CLI, in the environment of ``python`` (isolated from the source tree)."""
    # -I: isolated, so neither the cwd nor PYTHONPATH can put the source tree first.
    run = subprocess.run([str(python), "-I", "-c", SMOKE], cwd=cwd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok ")
    cli = python.parent / "zswap-rs"
    info = subprocess.run([str(cli), "info"], cwd=cwd, capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "lz4" in info.stdout


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
    run_smoke(python, tmp_path)


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
    # 'is consistent with the following platform tag: "manylinux_2_17_x86_64"'
    found = re.search(r'platform tag: "manylinux_2_(\d+)_(\w+)"', text)
    assert found, text
    minor, arch = int(found[1]), found[2]
    assert minor <= GLIBC_MINOR_MAX, f"needs glibc 2.{minor}: {text}"
    # The file name claims no more than auditwheel grants (pip trusts the name).
    platforms = wheel.name.removesuffix(".whl").split("-")[-1].split(".")
    assert f"manylinux_2_{minor}_{arch}" in platforms, (wheel.name, text)
    for platform in platforms:
        claimed = re.fullmatch(rf"manylinux_2_(\d+)_{arch}", platform)
        assert claimed is None or int(claimed[1]) >= minor, (wheel.name, text)
    # Static linking: the extension needs only system libraries (libc & co).
    for lib in ("libisal", "libzstd", "liblzo2", "libz.so"):
        assert lib not in text, text


def test_sdist_builds_with_pip_in_a_fresh_venv(tmp_path: Path) -> None:
    """``maturin sdist``, then ``pip install`` of the tarball: a source build with the
    system packages the README names, in a venv that has nothing else."""
    sdist_dir = tmp_path / "sdist"
    made = subprocess.run(
        ["maturin", "sdist", "-o", str(sdist_dir)], cwd=ROOT, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    (sdist,) = sdist_dir.glob("zswap_rs-*.tar.gz")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # Cargo's artifacts outlive pip's temporary build tree: a second run of the
    # suite rebuilds only this crate, not its dependencies.
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target" / "sdist-build"))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", str(sdist)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    run_smoke(python, tmp_path)
