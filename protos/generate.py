"""Generate Python code for the protos under protos/livecart.

    uv run python protos/generate.py            # regenerate into services/core
    uv run python protos/generate.py --check    # exit 1 and name stale files if out of date

Code is always generated into a temporary directory first, then compared with (or copied
over) the output root, so generating and checking cannot disagree. Generated modules whose
.proto was removed are deleted on regeneration and reported as stale by --check.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
DEFAULT_OUT = REPO_ROOT / "services" / "core"
PACKAGE = "livecart"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def find_protos() -> list[Path]:
    """Return every .proto under protos/livecart, relative to protos/."""
    return sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PACKAGE).rglob("*.proto"))


def generate(out: Path) -> None:
    """Run protoc over all protos into `out` and add package __init__.py files."""
    protos = find_protos()
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE}")
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for module_dir in {(out / p).parent for p in protos}:
        package_dir = module_dir
        while package_dir != out:
            (package_dir / "__init__.py").touch()
            package_dir = package_dir.parent


def generated_files(root: Path) -> set[Path]:
    """Generated files under root/livecart, relative to root."""
    package_root = root / PACKAGE
    if not package_root.exists():
        return set()
    return {
        p.relative_to(root)
        for p in package_root.rglob("*")
        if p.is_file() and (p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py")
    }


def stale_files(fresh: Path, out: Path) -> list[Path]:
    """Files under `out` that differ from, are missing from, or are absent in `fresh`.

    `__init__.py` files only need to exist; their content is not generated.
    """
    expected = generated_files(fresh)
    present = generated_files(out)
    stale = {p for p in present - expected if p.name != "__init__.py"}
    stale |= expected - present
    stale |= {
        p
        for p in expected & present
        if p.name != "__init__.py" and not filecmp.cmp(fresh / p, out / p, shallow=False)
    }
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="output root")
    parser.add_argument(
        "--check", action="store_true", help="only compare with the files in the output root"
    )
    opts = parser.parse_args(argv)
    out: Path = opts.out.resolve()

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        stale = stale_files(fresh, out)
        if opts.check:
            if stale:
                print("generated protos are stale; run `make protos`:", file=sys.stderr)
                for path in stale:
                    print(f"  {out / path}", file=sys.stderr)
                return 1
            return 0
        for path in stale:
            if (fresh / path).exists():
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(fresh / path, out / path)
                print(f"wrote {out / path}")
            else:
                (out / path).unlink()
                print(f"removed {out / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
