"""Make an installed package written for Python 3.14 importable on an older Python.

Usage: python defer_annotations.py PACKAGE

Python 3.14 evaluates annotations lazily (PEP 649), so code written for it may annotate with
names defined later in the module. Older Pythons evaluate them at definition time and fail
with a NameError; `from __future__ import annotations` (PEP 563) defers them there too. This
adds that import, after the docstring, to every module of the installed PACKAGE that lacks
it. Nothing else changes, and a Python >= 3.14 is left alone.
"""

import ast
import importlib.util
import pathlib
import sys

FUTURE = "from __future__ import annotations\n"


def main() -> int:
    (package,) = sys.argv[1:]
    if sys.version_info >= (3, 14):
        return 0
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        print(f"no installed package {package}", file=sys.stderr)
        return 1
    changed = 0
    for location in spec.submodule_search_locations:
        for path in sorted(pathlib.Path(location).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            if any(
                isinstance(node, ast.ImportFrom)
                and node.module == "__future__"
                and any(alias.name == "annotations" for alias in node.names)
                for node in tree.body
            ):
                continue
            body = tree.body
            has_docstring = bool(body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
            lines = source.splitlines(keepends=True)
            at = body[0].end_lineno if has_docstring else 0
            lines.insert(at, FUTURE)
            path.write_text("".join(lines), encoding="utf-8")
            changed += 1
    print(f"deferred annotations in {changed} module(s) of {package}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
