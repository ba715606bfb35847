"""`lazy_default`: jsonargparse's `lazy_instance` for a class-typed argument's default, made cheaply at import time.

`jsonargparse.lazy_instance` finds the module it was called from with `inspect.stack()`, which reads the source
lines of every frame on the stack. A default is built while its module is imported, deep in the import machinery's
frames, where that took 0.1 s a call and 1.1-1.5 s of every litforge process's start (measured on `_import_plugins`).
`lazy_default` hands it the caller's frame instead; the object it returns is the one `lazy_instance` returns.
"""

from __future__ import annotations

import inspect
import sys
from typing import TypeVar

from jsonargparse import lazy_instance

ClassType = TypeVar("ClassType")


def lazy_default(class_type: type[ClassType], **kwargs) -> ClassType:
    """`lazy_instance(class_type, **kwargs)` as if called where this is called, without walking the stack's source.

    While it runs, `inspect.stack` answers with the two frames `lazy_instance` reads (its own and its caller's); it is
    called at import time, when nothing else runs in the process.
    """
    frames = [None, inspect.FrameInfo(sys._getframe(1), "", 0, "", None, None)]  # [1][0]: the caller's frame
    real = inspect.stack
    inspect.stack = lambda context=1: frames
    try:
        return lazy_instance(class_type, **kwargs)
    finally:
        inspect.stack = real
