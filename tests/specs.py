"""Small OpenAPI documents written for a test (the Pet Store covers the big picture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SSE_RESPONSE = {"200": {"description": "events", "content": {"text/event-stream": {"schema": {"type": "object"}}}}}


def write_spec(directory: Path, paths: dict[str, Any], **root: Any) -> Path:
    """An OpenAPI 3.1 document with ``paths`` (and root members such as ``components`` or
    extensions) written to ``directory/spec.yaml``."""
    document = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, **root, "paths": paths}
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
