"""PromptLibrary: every prompt is a Jinja template referenced by name, rendered strictly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from selfalign.errors import PromptError, decode_problem
from selfalign.registry import did_you_mean

SUFFIX = ".j2"
# a run dir's copy of the prompts it used (outputs.write_prompts); its report reads only this
RUN_COPY = "prompts.json"


def digest(sources: dict[str, str]) -> str:
    """A prompt's hash (cache keys, fingerprints, the manifest): its files' text, in order."""
    return hashlib.sha256("\0".join(sources.values()).encode()).hexdigest()


@dataclass
class Prompt:
    name: str
    template: jinja2.Template
    variables: frozenset[str]  # undeclared variables of the template and its static includes
    sha256: str
    path: str
    # the template's file and every file it statically includes → their text, in hash order:
    # what a run dir keeps (prompts.json) so its report shows the prompts as they were
    sources: dict[str, str] = field(default_factory=dict)

    def render(self, **values: Any) -> str:
        try:
            return self.template.render(**values).strip()
        except jinja2.UndefinedError as exc:
            raise PromptError(
                f"prompt '{self.name}' ({self.path}): {exc.message}. Provide that variable as a "
                "column produced by an earlier stage or in the stage's `vars:`."
            ) from None


class PromptLibrary:
    """One strict Jinja environment over the user's prompt dirs (searched first) and ours."""

    def __init__(self, search_path: list[Path]) -> None:
        self.search_path = [Path(p).expanduser().resolve() for p in search_path]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(p) for p in self.search_path]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._cache: dict[str, Prompt] = {}

    def names(self) -> list[str]:
        return sorted(n[: -len(SUFFIX)] for n in self.env.list_templates(extensions=["j2"]))

    def get(self, name: str, where: str = "") -> Prompt:
        if name not in self._cache:
            self._cache[name] = self._load(name, where)
        return self._cache[name]

    def _load(self, name: str, where: str) -> Prompt:
        at = f"{where}: " if where else ""
        file = name + SUFFIX
        try:
            template = self.env.get_template(file)
        except jinja2.TemplateNotFound:
            names = self.names()
            dirs = ", ".join(str(p) for p in self.search_path)
            raise PromptError(
                f"{at}unknown prompt '{name}'.{did_you_mean(name, names)} Prompts are looked up "
                f"as <name>.j2 in: {dirs}. Add a folder with `prompts.search_path=[DIR]`."
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(
                f"{at}template syntax error in {exc.filename or file} line {exc.lineno}: {exc.message}"
            ) from None
        except UnicodeDecodeError:
            raise self._undecodable(file, at) from None
        try:
            variables, sources = self._scan(file, {})
        except UnicodeDecodeError:  # an included template: find which
            raise self._undecodable(None, at) from None
        path = template.filename or file
        return Prompt(name, template, frozenset(variables), digest(sources), path, sources)

    def _undecodable(self, file: str | None, at: str) -> PromptError:
        """The template (`file`, or any template when None) that is not UTF-8, with the line and
        byte (Jinja's loader reads templates as UTF-8 and names no file)."""
        files = (
            [d / file for d in self.search_path]
            if file
            else [d / f for d in self.search_path for f in self.env.list_templates(extensions=["j2"])]
        )
        for path in files:
            if path.is_file() and (
                problem := decode_problem(path, path.read_bytes(), "Re-save the template as UTF-8.")
            ):
                return PromptError(at + problem)
        return PromptError(f"{at}a prompt template is not valid utf-8 text. Re-save it as UTF-8.")

    def _scan(self, file: str, sources: dict[str, str]) -> tuple[set[str], dict[str, str]]:
        """Variables of `file` and every template it statically includes; `sources` gains
        each one's text (file → text, in the order the hash reads them)."""
        source, _, _ = self.env.loader.get_source(self.env, file)  # type: ignore[union-attr]
        sources[file] = source
        try:
            ast = self.env.parse(source, name=file)
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"template syntax error in {file} line {exc.lineno}: {exc.message}") from None
        variables = set(meta.find_undeclared_variables(ast))
        for ref in meta.find_referenced_templates(ast):
            if ref and ref not in sources:
                variables |= self._scan(ref, sources)[0]
        return variables, sources
