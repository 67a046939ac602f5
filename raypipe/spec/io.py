"""Write a pipeline to YAML/JSON, read it back, and describe the format as JSON Schema.

Example:
    >>> spec = raypipe.compile(addition, "addition.yaml")   # doctest: +SKIP
    >>> raypipe.load("addition.yaml") == spec                # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from raypipe.dsl.pipeline import Pipeline
from raypipe.errors import Problem, SpecLoadError
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.kfp import convert, is_kfp_spec
from raypipe.spec.models import PipelineSpec
from raypipe.spec.validate import validate_spec

__all__ = ["compile", "dumps", "json_schema", "load", "loads"]

PathLike = str | os.PathLike[str]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (component source) as readable literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dumps(spec: PipelineSpec, *, format: str = "yaml") -> str:
    """The document text of ``spec`` in ``"yaml"`` or ``"json"``."""
    document = spec.to_dict()
    if format == "json":
        return json.dumps(document, indent=2) + "\n"
    if format == "yaml":
        return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)
    raise ValueError(f"format must be 'yaml' or 'json', got {format!r}")


def compile(pipeline: Pipeline | PipelineSpec, path: PathLike | None = None) -> PipelineSpec:
    """Compile ``pipeline`` and, given ``path``, write it there (JSON for ``.json``, else YAML).

    The file is written atomically: on any error nothing is left half-written.

    Example:
        >>> raypipe.compile(addition, "addition.yaml").name   # doctest: +SKIP
        'addition'
    """
    spec = pipeline if isinstance(pipeline, PipelineSpec) else compile_pipeline(pipeline)
    if path is not None:
        target = Path(path)
        text = dumps(spec, format="json" if target.suffix == ".json" else "yaml")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    return spec


def load(path: PathLike) -> PipelineSpec:
    """Read a compiled pipeline (YAML or JSON) and check it; ``raypipe.run`` accepts the result.

    A Kubeflow Pipelines PipelineSpec (compiled by the KFP SDK) is converted to raypipe's IR.

    Raises:
        SpecLoadError: the file is malformed or inconsistent; every problem names its path
            in the document (and line).
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text()
    except OSError as exc:
        raise SpecLoadError(
            [Problem(f"cannot read the file: {exc.strerror}")], source=source
        ) from exc
    return loads(text, source=source)


def loads(text: str, *, source: str = "<string>") -> PipelineSpec:
    """Like :func:`load`, from a string."""
    try:
        documents = _documents(text)
    except yaml.YAMLError as exc:
        raise SpecLoadError([Problem(f"not valid YAML or JSON: {exc}")], source=source) from exc
    if documents and is_kfp_spec(documents[0]):
        # KFP's compiler writes the PipelineSpec, then optionally its platform spec
        return convert(documents, source=source).spec
    if len(documents) > 1:
        raise SpecLoadError(
            [Problem(f"expected one YAML document, got {len(documents)}")], source=source
        )
    document = documents[0] if documents else None
    if not isinstance(document, dict):
        raise SpecLoadError(
            [Problem(f"expected a mapping at the top, got {type(document).__name__}")],
            source=source,
        )
    try:
        spec = PipelineSpec.model_validate(document)
    except ValidationError as exc:
        lines = _line_index(text)  # only to locate problems: it parses the text again
        problems = [
            Problem(
                _pydantic_message(error),
                pipeline=document.get("name") if isinstance(document.get("name"), str) else None,
                path=_with_line(_loc_to_path(error["loc"]), lines),
            )
            for error in exc.errors()
        ]
        raise SpecLoadError(problems, source=source) from exc
    problems = validate_spec(spec)
    if problems:
        lines = _line_index(text)
        located = [
            Problem(p.message, p.pipeline, p.task, p.field, _with_line(p.path, lines))
            for p in problems
        ]
        raise SpecLoadError(located, source=source)
    return spec


def _documents(text: str) -> list[Any]:
    """The documents of ``text``: JSON parsed as JSON (it is YAML too, but the pure-Python
    YAML parser takes about 10 ms for a small pipeline), else every YAML document."""
    if text.lstrip().startswith("{"):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError:
            pass  # YAML flow style that is not JSON: the YAML parser decides
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed
    return [d for d in yaml.load_all(text, Loader=loader) if d is not None]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the compiled pipeline format."""
    schema = PipelineSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "raypipe PipelineSpec (raypipe/v1)"
    return schema


# Discriminated unions put their tag in error locations. Binding tags repeat the key that
# follows them (task_output.task_output.task); condition tags are labels of their own.
_BINDING_TAGS = {
    "constant",
    "pipeline_input",
    "task_output",
    "oneof",
    "task_final_status",
    "concat",
}
_LABEL_TAGS = {"comparison", "negation", "conjunction"}


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    items = list(loc)
    for index, item in enumerate(items):
        following = items[index + 1] if index + 1 < len(items) else None
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in _LABEL_TAGS or (item in _BINDING_TAGS and following == item):
            continue
        else:
            parts.append(str(item))
    return ".".join(parts)


def _pydantic_message(error: Any) -> str:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    return message


def _line_index(text: str) -> dict[str, int]:
    """Dotted document paths (as in problems) -> 1-based line numbers."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    index: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = f"{path}.{key.value}" if path else str(key.value)
                index[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = f"{path}[{i}]"
                index[child] = item.start_mark.line + 1
                walk(item, child)

    if root is not None:
        walk(root, "")
    return index


def _with_line(path: str | None, lines: dict[str, int]) -> str | None:
    if not path:
        return path
    probe = path
    while probe:
        if probe in lines:
            return f"{path} (line {lines[probe]})"
        probe = probe.rpartition(".")[0]
    return path
