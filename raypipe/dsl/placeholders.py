"""Run-time placeholders: strings the runtime replaces with facts about the run and step.

Pass one as a component argument and the step receives the value (KFP's constants, with
KFP's spelling, so compiled KFP pipelines carry them too):

    print_ids(job=dsl.PIPELINE_JOB_ID_PLACEHOLDER, task=dsl.PIPELINE_TASK_NAME_PLACEHOLDER)

A placeholder may sit inside a longer string (``f"run {dsl.PIPELINE_JOB_NAME_PLACEHOLDER}"``).

Example:
    >>> fill_placeholders("job {{$.pipeline_job_name}}", {"pipeline_job_name": "add-1"})
    'job add-1'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER",
    "PIPELINE_JOB_ID_PLACEHOLDER",
    "PIPELINE_JOB_NAME_PLACEHOLDER",
    "PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER",
    "PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER",
    "PIPELINE_ROOT_PLACEHOLDER",
    "PIPELINE_TASK_ID_PLACEHOLDER",
    "PIPELINE_TASK_NAME_PLACEHOLDER",
    "RUN_PLACEHOLDERS",
    "TASK_PLACEHOLDERS",
    "fill_placeholders",
    "has_placeholder",
    "unknown_placeholders",
]

PIPELINE_JOB_NAME_PLACEHOLDER = "{{$.pipeline_job_name}}"
"""The run's name."""
PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER = "{{$.pipeline_job_resource_name}}"
"""A name unique to the run, starting with the pipeline's name: ``<pipeline>-<run id>``."""
PIPELINE_JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"
"""The run id."""
PIPELINE_TASK_NAME_PLACEHOLDER = "{{$.pipeline_task_name}}"
"""The name of the task receiving it."""
PIPELINE_TASK_ID_PLACEHOLDER = "{{$.pipeline_task_uuid}}"
"""An id unique to the task within the run (each loop iteration has its own)."""
PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER = "{{$.pipeline_job_create_time_utc}}"
"""When the run was created, ISO 8601 in UTC."""
PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER = "{{$.pipeline_job_schedule_time_utc}}"
"""When a scheduled run was due (the creation time for a run started by hand)."""
PIPELINE_ROOT_PLACEHOLDER = "{{$.pipeline_root}}"
"""The artifact root the run writes under."""

RUN_PLACEHOLDERS = (
    "pipeline_job_name",
    "pipeline_job_resource_name",
    "pipeline_job_uuid",
    "pipeline_job_create_time_utc",
    "pipeline_job_schedule_time_utc",
    "pipeline_root",
)
"""Placeholders with one value per run."""
TASK_PLACEHOLDERS = ("pipeline_task_name", "pipeline_task_uuid")
"""Placeholders with one value per step."""

_PATTERN = re.compile(r"\{\{\$\.([a-z_]+)\}\}")
_MARK = "{{$."


def has_placeholder(value: object) -> bool:
    """Whether ``value`` is a string holding a run-time placeholder (cheap to ask)."""
    return isinstance(value, str) and _MARK in value and _PATTERN.search(value) is not None


def unknown_placeholders(text: str) -> list[str]:
    """Names of ``{{$.name}}`` placeholders in ``text`` that raypipe does not fill.

    Example:
        >>> unknown_placeholders("{{$.pipeline_job_name}} {{$.workspace_path}}")
        ['workspace_path']
    """
    known = set(RUN_PLACEHOLDERS) | set(TASK_PLACEHOLDERS)
    return sorted({n for n in _PATTERN.findall(text) if n not in known})


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each known placeholder replaced by its value; others are left as is."""
    return _PATTERN.sub(lambda m: values.get(m.group(1), m.group(0)), text)
