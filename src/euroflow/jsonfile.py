"""Reading the JSON files stages hand each other, with one-line errors naming the file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from euroflow.errors import EuroflowError


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse ``path``; ``what`` names the file in the error when it is missing (e.g. "blend file")."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EuroflowError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise EuroflowError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise EuroflowError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
