"""Jinja2 templates rendered with StrictUndefined: a missing variable stops the build by name."""

import json
from pathlib import Path
from typing import Any

import jinja2

from .errors import UserError


class Renderer:
    def __init__(self, templates_dir: Path, variables: dict[str, Any]):
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)),
                                      undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                      trim_blocks=True, lstrip_blocks=True,
                                      autoescape=False)
        self.env.filters["yaml"] = _to_yaml
        self.variables = variables

    def render(self, name: str) -> str:
        return self._render(name, lambda: self.env.get_template(name))

    def render_string(self, text: str, where: str) -> str:
        """A value from a stage file, e.g. a package named "{{ kernel_package }}"."""
        return self._render(where, lambda: self.env.from_string(text))

    def _render(self, name: str, template) -> str:
        try:
            return template().render(self.variables)
        except jinja2.UndefinedError as e:
            raise UserError(f"template {name}: undefined variable: {e.message}") from None
        except jinja2.TemplateSyntaxError as e:
            raise UserError(f"template {e.name or name}, line {e.lineno}: {e.message}") from None
        except jinja2.TemplateNotFound as e:
            raise UserError(f"template {e.name}: not found in {self.env.loader.searchpath[0]}") from None


def _to_yaml(value: Any) -> str:
    """A value embedded in a YAML template, quoted safely: JSON is valid YAML on one line."""
    return json.dumps(value)
