"""Hides the modules and distributions a bare GPU image does not have (see tests/support/bare_image.py).

Python imports this at start-up when its folder is on PYTHONPATH. BARE_IMAGE_ALLOWED lists the
top-level modules that exist there besides the standard library, BARE_IMAGE_DISTRIBUTIONS the
installed distributions (pytest loads the plugins of those only).
"""

import os
import sys

_ALLOWED = frozenset(os.environ.get("BARE_IMAGE_ALLOWED", "").split(","))
_DISTRIBUTIONS = frozenset(os.environ.get("BARE_IMAGE_DISTRIBUTIONS", "").split(","))


def _visible(top: str) -> bool:
    return top in _ALLOWED or top in sys.stdlib_module_names or top.startswith("_sysconfigdata")


class _Hide:
    """Wraps a meta-path finder: it finds no module and no distribution the bare image lacks."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if not _visible(name.partition(".")[0]):
            return None  # as if not installed: `import` raises ModuleNotFoundError, find_spec() answers None
        return self._inner.find_spec(name, path, target)  # type: ignore[attr-defined]

    def find_distributions(self, *args: object, **kwargs: object) -> object:
        find = getattr(self._inner, "find_distributions", None)
        for distribution in find(*args, **kwargs) if find else ():
            name = (distribution.metadata["Name"] or "").replace("_", "-").replace(".", "-").lower()
            if name in _DISTRIBUTIONS:
                yield distribution

    def __getattr__(self, attribute: str) -> object:
        return getattr(self._inner, attribute)


sys.meta_path[:] = [_Hide(finder) for finder in sys.meta_path]
