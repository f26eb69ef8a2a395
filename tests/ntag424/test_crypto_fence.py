"""The crypto fence: ``station/ntag424/crypto.py`` is the only module that imports
``cryptography.hazmat``; everything else (SUN verifiers, secure messaging, the originality
signature, the emulated card, the tracker) gets its AES, CMAC and ECDSA from there.

The tracker may use ``cryptography``'s recipes (Fernet) but not its raw primitives.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FENCE = Path("station/ntag424/crypto.py")
ALLOWED_ELSEWHERE = ("cryptography.fernet",)


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an ``import``, ``from … import`` or ``importlib.import_module("…")``/
    ``__import__("…")`` call names (``from a import b`` counts as ``a.b`` too)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                found.append(str(first.value))
    return found


def _breaches(source: str) -> list[str]:
    """Imports of ``cryptography`` in ``source`` that only the fence module may make: all of
    it (a bare ``import cryptography`` reaches hazmat too) except the allowed recipes."""
    return [
        module
        for module in _imported_modules(ast.parse(source))
        if (module == "cryptography" or module.startswith("cryptography."))
        and not module.startswith(ALLOWED_ELSEWHERE)
    ]


def test_only_crypto_py_imports_cryptography_hazmat() -> None:
    sources = sorted((REPO / "station").rglob("*.py")) + sorted((REPO / "tracker").rglob("*.py"))
    assert len(sources) > 50, "the scan must see the project's sources"
    breaches = {}
    for path in sources:
        rel = path.relative_to(REPO)
        if rel == FENCE:
            continue
        found = _breaches(path.read_text(encoding="utf-8"))
        if found:
            breaches[str(rel)] = found
    assert breaches == {}, "import these through station/ntag424/crypto.py instead"


def test_the_fence_module_is_where_the_primitives_are() -> None:
    found = _breaches((REPO / FENCE).read_text(encoding="utf-8"))
    assert "cryptography.hazmat.primitives.cmac" in found
    assert "cryptography.hazmat.primitives.asymmetric.ec" in found


def test_the_scan_catches_every_way_in() -> None:
    """The scanner itself: each form of import is caught, Fernet is allowed."""
    assert _breaches("from cryptography.hazmat.primitives import cmac") != []
    assert _breaches("import cryptography.hazmat.primitives.ciphers as c") != []
    assert _breaches("from cryptography import hazmat") != []
    assert _breaches("import cryptography") != []
    assert _breaches("def f():\n    from cryptography.hazmat import x\n") != []
    assert _breaches("import importlib\nimportlib.import_module('cryptography.hazmat')") != []
    assert _breaches("__import__('cryptography.hazmat.primitives')") != []
    assert _breaches("from cryptography.fernet import Fernet, InvalidToken") == []
    assert _breaches("import hashlib\nfrom station.ntag424 import crypto") == []
    assert _breaches('"""cryptography.hazmat in prose is fine"""') == []
