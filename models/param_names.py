"""The detector's parameter names without importing torch.

Every `aeflow` command validates its config's ``model`` section against
``AutoencoderDetector.__init__``; importing :mod:`models.detector` for that costs torch and
scikit-learn (about 5 s of CPU per command, several times that on a busy machine), paid even by
`aeflow ingest`. The names are read from the signature in the module's source instead: the same
signature scikit-learn's ``get_params`` reads.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path


@functools.cache
def detector_parameter_names() -> frozenset[str]:
    """The keyword parameters of ``AutoencoderDetector.__init__`` (all but ``self``)."""
    source = Path(__file__).with_name("detector.py")
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):  # no source installed: ask the class itself
        tree = None
    for node in tree.body if tree else ():
        if isinstance(node, ast.ClassDef) and node.name == "AutoencoderDetector":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    arguments = item.args
                    return frozenset(a.arg for a in [*arguments.args[1:], *arguments.kwonlyargs])
    # __init__ moved elsewhere (a base class): the slow, always-right answer.
    from models.detector import AutoencoderDetector

    return frozenset(AutoencoderDetector().get_params())
