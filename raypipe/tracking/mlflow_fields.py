"""How raypipe values become MLflow params, metrics and tags: flattened, named, cut to size.

MLflow keeps params as strings of at most 6,000 characters, tags of at most 8,000, and
keys of at most 250 characters made of letters, digits, ``_ - . / : `` and spaces. Nested
arguments are flattened (``{"opt": {"lr": 0.1}}`` -> ``opt.lr``; lists as ``a.0``, ``a.1``),
and values that do not fit are cut, their keys listed by the caller in a tag.

Example:
    >>> flatten_params({"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}})
    {'lr': '0.1', 'opt.name': 'adam', 'opt.betas.0': '0.9', 'opt.betas.1': '0.99'}
    >>> mlflow_key("acc@top 1")
    'acc_top 1'
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

from raypipe.runtime.result import ArtifactRecord, ObjectSummary, RunStatus, TaskState

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_PARAM_LENGTH",
    "MAX_TAG_LENGTH",
    "cut",
    "flatten_params",
    "mlflow_key",
    "numeric_leaves",
    "param_text",
    "run_status",
    "step_status",
]

# MLflow 3's limits (mlflow.utils.validation: MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH,
# MAX_ENTITY_KEY_LENGTH); tests compare them with the installed MLflow. Written here so
# that building records does not import MLflow (a second) on the run's event thread.
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250

# Lists up to this long become one param per item; longer ones one JSON param.
_MAX_LIST_ITEMS = 10
# An argument that flattens to more keys than this is logged as one JSON param instead.
_MAX_KEYS_PER_ARGUMENT = 100

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")


def mlflow_key(name: str) -> str:
    """``name`` as a valid MLflow param, metric or tag key: other characters become ``_``,
    and a path MLflow would normalise (``a//b``, ``./a``, ``a/``) has its slashes replaced.

    Example:
        >>> mlflow_key("val/acc"), mlflow_key("a//b"), mlflow_key("")
        ('val/acc', 'a__b', '_')
    """
    key = _BAD_KEY_CHARS.sub("_", name)[:MAX_KEY_LENGTH] or "_"
    normal = posixpath.normpath(key)
    if normal != key or normal == "." or normal.startswith(("..", "/")):
        key = key.replace("/", "_")
        if key in (".", "..") or key.startswith(".."):
            key = "_" + key[1:]
    return key


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut.

    Example:
        >>> cut("abcdef", 4)
        ('abcd', True)
    """
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def param_text(value: Any) -> str:
    """One value as MLflow shows a param: strings as they are, records and lists as text.

    Example:
        >>> param_text(True), param_text(None), param_text([1, 2]), param_text("adam")
        ('True', 'None', '[1, 2]', 'adam')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, ArtifactRecord):
        return value.uri
    if isinstance(value, ObjectSummary):
        return value.type if value.nbytes is None else f"{value.type} ({value.nbytes} bytes)"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_json_default)
    return str(value)


def flatten_params(arguments: Mapping[str, Any]) -> dict[str, str]:
    """Arguments as MLflow params: nested dicts and short lists flattened with dots.

    Values are not cut here (see :func:`cut`). An argument that would flatten to more
    than 100 keys, and any list longer than 10 items, stays one JSON value.

    Example:
        >>> flatten_params({"layers": [64, 32], "data": {}, "x": None})
        {'layers.0': '64', 'layers.1': '32', 'data': '{}', 'x': 'None'}
    """
    params: dict[str, str] = {}
    for name, value in arguments.items():
        flat = dict(_flatten(str(name), value))
        if len(flat) > _MAX_KEYS_PER_ARGUMENT:
            flat = {str(name): param_text(value)}
        for key, text in flat.items():
            params[mlflow_key(key)] = text
    return params


def numeric_leaves(name: str, value: Any) -> Iterator[tuple[str, float]]:
    """The numbers in a value (an output), flattened like params: the run's metrics.

    Booleans are not numbers here; dicts and short lists are walked.

    Example:
        >>> list(numeric_leaves("scores", {"acc": 0.9, "label": "cat", "ok": True}))
        [('scores.acc', 0.9)]
    """
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield mlflow_key(name), float(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from numeric_leaves(f"{name}.{key}", item)
    elif isinstance(value, (list, tuple)) and len(value) <= _MAX_LIST_ITEMS:
        for index, item in enumerate(value):
            yield from numeric_leaves(f"{name}.{index}", item)


_RUN_STATUS = {
    RunStatus.SUCCEEDED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELED: "KILLED",
    RunStatus.RUNNING: "KILLED",  # a run that ends while RUNNING was cut short
}

_STEP_STATUS = {
    TaskState.SUCCEEDED: "FINISHED",
    TaskState.CACHED: "FINISHED",
    TaskState.FAILED: "FAILED",
    TaskState.UPSTREAM_FAILED: "FAILED",
    TaskState.SKIPPED: "KILLED",
    TaskState.CANCELED: "KILLED",
    TaskState.PENDING: "KILLED",
    TaskState.RUNNING: "KILLED",
}


def run_status(status: RunStatus) -> str:
    """MLflow's status for how a run ended: FINISHED, FAILED or KILLED.

    Example:
        >>> run_status(RunStatus.CANCELED)
        'KILLED'
    """
    return _RUN_STATUS[status]


def step_status(state: TaskState) -> str:
    """MLflow's status for how a step ended (a cache hit is FINISHED).

    Example:
        >>> step_status(TaskState.CACHED)
        'FINISHED'
    """
    return _STEP_STATUS[state]


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        if not value:
            yield prefix, "{}"
        for key, item in value.items():
            yield from _flatten(f"{prefix}.{key}", item)
    elif isinstance(value, (list, tuple)) and 0 < len(value) <= _MAX_LIST_ITEMS:
        for index, item in enumerate(value):
            yield from _flatten(f"{prefix}.{index}", item)
    else:
        yield prefix, param_text(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (ArtifactRecord, ObjectSummary)):
        return param_text(value)
    return str(value)
