"""Versioned prompt files: <name>@<version>.md with a front matter, a system part and a user
template; loaded, validated and identified by name@version and a hash of the file's text. The answer
plane's prompts take {{passages}} and {{question}}; other prompt families (the judge's) name their own."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ragline.config import ConfigError
from ragline.safe_text import printable

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
PLACEHOLDERS = ("passages", "question")  # an answer prompt's: each once in the user template, nothing else
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
_PART = re.compile(r"^# (system|user)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Prompt:
    """One prompt version: the system message and the user template with its placeholders."""

    name: str
    version: int
    system: str
    user: str
    sha256: str  # of the file's text: an edit without a new version still shows
    description: str = ""

    @property
    def ref(self) -> str:
        """name@version, as recorded with every answer."""
        return f"{self.name}@{self.version}"

    def messages(self, **values: str) -> list[dict[str, str]]:
        """The chat messages for these placeholder values (inserted once, never re-expanded)."""
        user = _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.user)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def load_prompt(
    ref: str,
    prompt_dir: Path | None = None,
    *,
    builtin: Path = PROMPT_DIR,
    placeholders: tuple[str, ...] = PLACEHOLDERS,
) -> Prompt:
    """The prompt named name@version: from prompt_dir if it has the file, else ragline's own
    (`builtin`: the folder of that prompt family)."""
    candidates = [d / f"{ref}.md" for d in (prompt_dir, builtin) if d is not None]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = " or ".join(str(p.parent) for p in candidates)
        raise ConfigError(f"no prompt file {printable(ref, 80)}.md in {where}")
    return parse_prompt(path.read_text(encoding="utf-8"), path.name, placeholders)


def parse_prompt(text: str, filename: str, placeholders: tuple[str, ...] = PLACEHOLDERS) -> Prompt:
    """Validate a prompt file's text: front matter name and version match the file name, both
    parts are present and the user template holds each of `placeholders` once, and nothing else."""
    where = f"prompt {printable(filename, 120)}"
    text = text.replace("\r\n", "\n")
    head = _FRONT_MATTER.match(text)
    if head is None:
        raise ConfigError(f"{where}: must start with a front matter between --- lines (name, version)")
    try:
        meta = yaml.safe_load(head.group(1)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: front matter is not valid YAML: {printable(exc, 200)}") from None
    if not isinstance(meta, dict) or set(meta) - {"name", "version", "description"}:
        raise ConfigError(f"{where}: front matter takes name, version and description only")
    name, version = meta.get("name"), meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{where}: version must be a whole number of at least 1")
    if f"{name}@{version}.md" != filename:
        raise ConfigError(
            f"{where}: front matter says {printable(f'{name}@{version}', 80)}; the file name must match"
        )
    body = text[head.end() :]
    parts = _PART.split(body)
    # ['', 'system', text, 'user', text] when both headings appear once, system first
    if len(parts) != 5 or parts[0].strip() or parts[1] != "system" or parts[3] != "user":
        raise ConfigError(f"{where}: needs a '# system' part, then a '# user' part")
    system, user = parts[2].strip(), parts[4].strip()
    if _PLACEHOLDER.search(system):
        raise ConfigError(f"{where}: placeholders belong in the user part only")
    found = [m.group(1) for m in _PLACEHOLDER.finditer(user)]
    unknown = sorted(set(found) - set(placeholders))
    if unknown or sorted(found) != sorted(placeholders):
        wanted = " and ".join(f"{{{{{p}}}}}" for p in placeholders)
        raise ConfigError(
            f"{where}: the user part must hold {wanted} once each"
            + (f"; unknown: {unknown}" if unknown else "")
        )
    return Prompt(
        name=str(name),
        version=version,
        system=system,
        user=user,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        description=str(meta.get("description") or ""),
    )
