"""Generate docs/configuration.md from the Settings model, so the reference cannot drift.

python -m trio_router.docgen docs/configuration.md
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

from .settings import Settings

HEADER = """# Configuration reference

Generated from `trio_router/settings.py` by `python -m trio_router.docgen docs/configuration.md`
(or `nox -s docs`); a test fails if this file and the model disagree.

Precedence: defaults < config file < `TRIO_ROUTER_*` environment variables < command-line flags.
An invalid value, or an unknown name in the config file, stops startup with one line naming the
setting and the reason.

The config file is given with `trio-router run --config FILE` (or `TRIO_ROUTER_CONFIG=FILE`): TOML
when its name ends in `.toml`, YAML otherwise, a flat table of the names below (`-` or `_`):

```toml
port = 9000
workers = 2
request-timeout = 10
handler_overflow = "shed"

[security.ApiKeyAuth]           # one table per security scheme of the spec
keys_env = "MY_API_KEYS"
```

| setting | flag | environment | default | meaning |
|---|---|---|---|---|
"""


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        value = field.get_default(call_default_factory=True)
        default = "" if value is None else "a table" if isinstance(value, BaseModel) else f"`{value}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| {name} | `{flag}` | `TRIO_ROUTER_{name.upper()}` | {default} | {description} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(render())
