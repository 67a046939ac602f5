"""Survey the KFP conformance corpus: which KFP IR features each pipeline uses.

Reads ``../shared/kfp/pipelines/*.yaml`` and ``cases.json`` (read-only) and prints a
Markdown report, the source of ``docs/kfp-corpus.md``:

    .venv/bin/python tools/kfp_survey.py > docs/kfp-corpus.md
    .venv/bin/python tools/kfp_survey.py --corpus /path/to/kfp > report.md
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from raypipe.errors import SpecLoadError
from raypipe.spec.kfp import convert

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "kfp"  # ../shared/kfp
_BLOCK = re.compile(r"^comp-(for-loop|condition-branches|condition|exit-handler)-\d+$")


def _dags(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield "root", (spec.get("root") or {}).get("dag") or {}
    for name, component in (spec.get("components") or {}).items():
        if "dag" in component:
            yield name, component["dag"]


def _tasks(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    for owner, dag in _dags(spec):
        for name, task in (dag.get("tasks") or {}).items():
            yield owner, name, task


def survey(path: Path) -> dict[str, Any]:
    """The features one compiled pipeline uses (counts, CEL conditions, ...)."""
    text = path.read_text()
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    spec = documents[0]
    features: Counter[str] = Counter()
    conditions: list[str] = []
    components = spec.get("components") or {}
    for name, component in components.items():
        if "dag" in component and not _BLOCK.match(name):
            features["nested pipeline"] += 1
        for kind in ("inputDefinitions", "outputDefinitions"):
            for spec_ in ((component.get(kind) or {}).get("artifacts") or {}).values():
                if spec_.get("isArtifactList"):
                    features["artifact list"] += 1
    for _, _, task in _tasks(spec):
        ref = (task.get("componentRef") or {}).get("name", "")
        if "parameterIterator" in task:
            items = task["parameterIterator"].get("items") or {}
            features["loop (raw)" if "raw" in items else "loop (input)"] += 1
        if "artifactIterator" in task:
            features["artifact iterator"] += 1
        if (task.get("iteratorPolicy") or {}).get("parallelismLimit"):
            features["parallelism"] += 1
        trigger = task.get("triggerPolicy") or {}
        if "condition" in trigger:
            conditions.append(str(trigger["condition"]))
        if trigger.get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED":
            features["all-done trigger"] += 1
        if ref.startswith("comp-exit-handler-"):
            features["exit handler"] += 1
        if ref.startswith("comp-condition-branches-"):
            features["if/elif/else"] += 1
        if "retryPolicy" in task:
            features["retry"] += 1
        caching = task.get("cachingOptions")
        if caching is not None:
            features["cache on" if caching.get("enableCache") else "cache off"] += 1
        for binding in ((task.get("inputs") or {}).get("parameters") or {}).values():
            if "taskFinalStatus" in binding:
                features["final status"] += 1
            if "parameterExpressionSelector" in binding:
                features["item field"] += 1
            constant = (binding.get("runtimeValue") or {}).get("constant")
            if isinstance(constant, str) and "{{$.inputs." in constant:
                features["f-string"] += 1
            elif isinstance(constant, str) and "{{$." in constant:
                features["run-time placeholder"] += 1
    for _, dag in _dags(spec):
        for output in ((dag.get("outputs") or {}).get("parameters") or {}).values():
            if "valueFromOneof" in output:
                features["oneof"] += 1
        for output in ((dag.get("outputs") or {}).get("artifacts") or {}).values():
            if len(output.get("artifactSelectors") or []) > 1:
                features["oneof"] += 1
    for executor in ((spec.get("deploymentSpec") or {}).get("executors") or {}).values():
        container = executor.get("container")
        if container is None:
            features["importer" if "importer" in executor else "other executor"] += 1
            continue
        if "--function_to_execute" not in (container.get("args") or []):
            features["container component"] += 1
        if container.get("resources"):
            features["resources"] += 1
        if container.get("env"):
            features["env"] += 1
    if len(documents) > 1:
        features["platform spec"] += 1
    try:
        convert(documents, source=path.name)
        converts = "yes"
    except SpecLoadError as exc:
        message = exc.problems[0].message.split(": ", 1)[-1]
        converts = "no: " + message.split(" (")[0].replace("|", "\\|")
    return {"features": features, "conditions": conditions, "converts": converts}


def report(corpus: Path) -> str:
    cases = {c["file"]: c for c in json.loads((corpus / "cases.json").read_text())}
    rows = []
    all_conditions: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    converted = 0
    for path in sorted((corpus / "pipelines").glob("*.yaml")):
        result = survey(path)
        case = cases.get(f"pipelines/{path.name}", {})
        all_conditions.update(result["conditions"])
        totals.update({k: 1 for k in result["features"]})
        converted += result["converts"] == "yes"
        shown = ", ".join(
            f"{name}×{count}" if count > 1 else name
            for name, count in sorted(result["features"].items())
        )
        outputs = case.get("expect_outputs")
        expected = "not checked" if outputs is None else (", ".join(outputs) or "none")
        rows.append(
            f"| {path.stem} | {shown or '-'} | {len(result['conditions']) or '-'} | "
            f"{case.get('expect_status', '?')} | {expected} | {result['converts']} |"
        )
    lines = [
        "# The KFP conformance corpus",
        "",
        "Generated by `tools/kfp_survey.py` from `../shared/kfp` (40 pipelines compiled by",
        "KFP 2.17.3, and `cases.json`). Features are KFP IR constructs, counted per pipeline:",
        "",
        "* **loop (raw / input)**: `parameterIterator` over a literal list / an input;",
        "  **artifact iterator**: `artifactIterator`; **parallelism**: `iteratorPolicy`;",
        "  **item field**: `parameterExpressionSelector` (`item.field`);",
        "* **if/elif/else**: a `condition-branches-N` block; **all-done trigger**:",
        "  `ALL_UPSTREAM_TASKS_COMPLETED` (exit tasks, `ignore_upstream_failure`);",
        "* **nested pipeline**: a DAG component that is not a control-flow block;",
        "* **f-string**: a constant with `{{$.inputs.parameters[...]}}` placeholders;",
        "  **run-time placeholder**: `{{$.pipeline_job_name}}` and friends;",
        "* **cache on/off**: tasks with `cachingOptions` enabled or empty.",
        "",
        "No pipeline uses an importer, a container component, resources or a platform spec.",
        f"`raypipe.spec.kfp.convert` converts {converted} of {len(rows)}; the last column "
        "says what blocks the others.",
        "",
        "| pipeline | features | conditions | expected status | expected outputs | converts |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "## How `raypipe.spec.kfp.convert` maps them",
        "",
        "* components keep their KFP names without `comp-`; task names are KFP's task keys;",
        "* a Python executor's embedded program is loaded with its `kfp` imports mapped to",
        "  `raypipe` and read by `raypipe.dsl.component` (it must agree with the IR); the",
        "  function runs in-process on a Ray worker. Container executors run their command",
        "  line in a subprocess; importers refer to their URI. `packages_to_install`",
        "  -> `packages`, the image -> `image`; the executors as KFP wrote them are in",
        "  `KfpConversion.executors`;",
        "* `parameterIterator`/`artifactIterator` + `parallelismLimit` -> `loop`;",
        '  `parseJson(string_value)["k"]` -> a `pipeline_input` with `field: [k]`;',
        "* `triggerPolicy.condition` (CEL: comparisons, `!`, `&&`, `int()`/`double()`/",
        "  `string()` casts of parameters of that type) -> `condition`;",
        "  `ALL_UPSTREAM_TASKS_COMPLETED` -> `trigger: all_done`;",
        "* `valueFromOneof` and multi-selector `artifactSelectors` -> `oneof`;",
        "  `taskFinalStatus` -> `task_final_status`; `dependentTasks` -> `after`;",
        "* `cachingOptions.enableCache` -> `cache` (`{}` is off), `retryPolicy` -> retries",
        "  and backoff; container `env`/`resources` -> the options of each task using it;",
        "* KFP writes integers as doubles (`2.0`): constants and defaults of integer inputs",
        "  become ints. Outputs KFP declares as lists inside a loop (a loop body's, or a",
        "  condition's nested in a loop) take one item's type, as raypipe's IR expects;",
        "* `{{$.pipeline_job_name}}`-style constants are kept (and listed in",
        "  `KfpConversion.placeholders`) and filled per step; a constant with",
        "  `{{$.inputs.parameters[...]}}` (an f-string of pipeline values) -> `concat`;",
        "  unknown fields and non-empty platform settings are load errors.",
        "",
        "Every case of `cases.json` runs from its YAML in `tests/test_kfp_corpus.py`.",
        "",
        "## Pipelines per feature",
        "",
        "| feature | pipelines |",
        "| --- | --- |",
        *(f"| {name} | {count} |" for name, count in sorted(totals.items())),
        "",
        "## CEL conditions seen (`triggerPolicy.condition`)",
        "",
        *(
            f"* `{text}`" + (f" ×{n}" if n > 1 else "")
            for text, n in sorted(all_conditions.items())
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    print(report(parser.parse_args().corpus), end="")


if __name__ == "__main__":
    main()
