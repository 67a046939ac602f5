"""raypipe.spec.kfp: KFP PipelineSpec -> raypipe IR (structure only; executors are not run yet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from raypipe.errors import SpecLoadError
from raypipe.spec.kfp import convert, is_kfp_spec
from raypipe.spec.kfp.cel import And, CelError, Compare, Literal, Not, Ref, parse_condition
from raypipe.spec.models import (
    Comparison,
    Conjunction,
    ConstantBinding,
    Negation,
    OneOfBinding,
    PipelineInputBinding,
    TaskFinalStatusBinding,
    TaskOutputBinding,
)

# A copy of ../shared/kfp (Apache-2.0, see its README), so that the tests are hermetic.
CORPUS = Path(__file__).resolve().parent / "data" / "kfp" / "pipelines"
CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))

# Pipelines of the corpus that do not convert yet, and the feature named in the error.
BLOCKED: dict[str, str] = {}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_the_expectation_list_matches_the_corpus() -> None:
    names = {p.stem for p in CORPUS_FILES}
    assert len(names) == 40
    assert set(BLOCKED) <= names


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_corpus_pipeline_converts(path: Path) -> None:
    documents = _documents(path)
    assert is_kfp_spec(documents)
    if path.stem in BLOCKED:
        with pytest.raises(SpecLoadError) as info:
            convert(documents, source=path.name)
        assert BLOCKED[path.stem] in str(info.value)
        assert all(p.task for p in info.value.problems)  # each problem names its task
        return
    result = convert(documents, source=path.name)
    spec = result.spec
    assert spec.name == documents[0]["pipelineInfo"]["name"]
    executor_components = {n for n, c in spec.components.items() if c.python is not None}
    assert executor_components == set(result.executors)
    for executor in result.executors.values():
        assert executor.kind == "python" and executor.function_source
        assert f"def {executor.function_name}(" in executor.function_source


def test_every_corpus_condition_parses() -> None:
    conditions = {
        task["triggerPolicy"]["condition"]
        for path in CORPUS_FILES
        for doc in _documents(path)[:1]
        for body in [doc["root"], *doc["components"].values()]
        for task in (body.get("dag") or {}).get("tasks", {}).values()
        if "condition" in task.get("triggerPolicy", {})
    }
    assert len(conditions) > 20
    for text in conditions:
        parse_condition(text)


def test_json_form_converts_like_yaml() -> None:
    documents = _documents(CORPUS / "add_numbers.yaml")
    from_json = json.loads(json.dumps(documents[0]))
    assert convert(from_json, source="a.json").spec == convert(documents, source="a.yaml").spec


# -- focused examples, written by hand in KFP's shape -------------------------------------


def _executor(function: str, component: dict[str, Any] | None = None) -> dict[str, Any]:
    """A KFP executor whose embedded function has the component's interface."""
    component = component or {}
    names = list((component.get("inputDefinitions") or {}).get("parameters") or {})
    outputs = (component.get("outputDefinitions") or {}).get("parameters") or {}
    returns = " -> typing.Any" if "Output" in outputs else ""
    signature = ", ".join(f"{n}: typing.Any" for n in names)
    source = f"import typing\n\ndef {function}({signature}){returns}:\n    return None\n"
    return {
        "container": {
            "image": "python:3.11",
            "command": ["sh", "-ec", "python3 -m kfp.dsl.executor_main ...", source],
            "args": ["--executor_input", "{{$}}", "--function_to_execute", function],
        }
    }


def _pipeline(
    root: dict[str, Any],
    components: dict[str, Any],
    executors: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "pipelineInfo": {"name": "demo"},
        "root": root,
        "components": components,
        "deploymentSpec": {
            "executors": {f"exec-{f}": _executor(f, components.get(f"comp-{f}")) for f in executors}
        },
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.17.3",
    }


def _step(function: str, inputs: dict[str, str], output: str | None = "STRING") -> dict[str, Any]:
    component: dict[str, Any] = {
        "executorLabel": f"exec-{function}",
        "inputDefinitions": {
            "parameters": {name: {"parameterType": kind} for name, kind in inputs.items()}
        },
    }
    if output:
        component["outputDefinitions"] = {"parameters": {"Output": {"parameterType": output}}}
    return component


def _param(name: str) -> dict[str, Any]:
    return {"componentInputParameter": name}


def _out(task: str, key: str = "Output") -> dict[str, Any]:
    return {"taskOutputParameter": {"producerTask": task, "outputParameterKey": key}}


def test_loop_with_parallelism_and_collected_output() -> None:
    doc = _pipeline(
        root={
            "inputDefinitions": {"parameters": {"xs": {"parameterType": "LIST"}}},
            "dag": {
                "tasks": {
                    "for-loop-1": {
                        "componentRef": {"name": "comp-for-loop-1"},
                        "inputs": {"parameters": {"pipelinechannel--xs": _param("xs")}},
                        "parameterIterator": {
                            "itemInput": "pipelinechannel--xs-loop-item",
                            "items": {"inputParameter": "pipelinechannel--xs"},
                        },
                        "iteratorPolicy": {"parallelismLimit": 2},
                        "taskInfo": {"name": "for-loop-1"},
                    },
                    "total": {
                        "componentRef": {"name": "comp-total"},
                        "dependentTasks": ["for-loop-1"],
                        "inputs": {
                            "parameters": {"xs": _out("for-loop-1", "pipelinechannel--echo-Output")}
                        },
                        "taskInfo": {"name": "total"},
                    },
                }
            },
        },
        components={
            "comp-for-loop-1": {
                "dag": {
                    "tasks": {
                        "echo": {
                            "componentRef": {"name": "comp-echo"},
                            "inputs": {
                                "parameters": {
                                    "x": {
                                        "componentInputParameter": "pipelinechannel--xs-loop-item",
                                        "parameterExpressionSelector": (
                                            'parseJson(string_value)["lr"]'
                                        ),
                                    }
                                }
                            },
                            "cachingOptions": {},
                            "taskInfo": {"name": "echo"},
                        }
                    },
                    "outputs": {
                        "parameters": {
                            "pipelinechannel--echo-Output": {
                                "valueFromParameter": {
                                    "producerSubtask": "echo",
                                    "outputParameterKey": "Output",
                                }
                            }
                        }
                    },
                },
                "inputDefinitions": {
                    "parameters": {
                        "pipelinechannel--xs": {"parameterType": "LIST"},
                        "pipelinechannel--xs-loop-item": {"parameterType": "STRUCT"},
                    }
                },
                "outputDefinitions": {
                    "parameters": {"pipelinechannel--echo-Output": {"parameterType": "LIST"}}
                },
            },
            "comp-echo": _step("echo", {"x": "STRING"}),
            "comp-total": _step("total", {"xs": "LIST"}),
        },
        executors=("echo", "total"),
    )
    spec = convert(doc, source="loop.yaml").spec
    task = spec.root.dag.tasks["for-loop-1"]  # type: ignore[union-attr]
    assert task.loop is not None
    assert task.loop.items == PipelineInputBinding(pipeline_input="xs")
    assert task.loop.item_input == "pipelinechannel--xs-loop-item"
    assert task.loop.parallelism == 2
    body = spec.components["for-loop-1"]
    assert body.outputs["pipelinechannel--echo-Output"].type == "str"  # one item's value
    echo = body.dag.tasks["echo"]  # type: ignore[union-attr]
    assert echo.inputs["x"] == PipelineInputBinding(
        pipeline_input="pipelinechannel--xs-loop-item", field=["lr"]
    )
    assert echo.options.cache is False
    assert spec.root.dag.tasks["total"].after == ["for-loop-1"]  # type: ignore[union-attr]


def _condition_pipeline(condition: str) -> dict[str, Any]:
    return _pipeline(
        root={
            "inputDefinitions": {
                "parameters": {"n": {"parameterType": "NUMBER_INTEGER", "defaultValue": 3.0}}
            },
            "dag": {
                "tasks": {
                    "flip": {"componentRef": {"name": "comp-flip"}, "taskInfo": {"name": "flip"}},
                    "condition-1": {
                        "componentRef": {"name": "comp-condition-1"},
                        "dependentTasks": ["flip"],
                        "inputs": {
                            "parameters": {
                                "pipelinechannel--flip-Output": _out("flip"),
                                "pipelinechannel--n": _param("n"),
                            }
                        },
                        "triggerPolicy": {"condition": condition},
                        "taskInfo": {"name": "condition-1"},
                    },
                }
            },
        },
        components={
            "comp-flip": _step("flip", {}),
            "comp-condition-1": {
                "dag": {
                    "tasks": {
                        "echo": {
                            "componentRef": {"name": "comp-echo"},
                            "inputs": {
                                "parameters": {"x": {"runtimeValue": {"constant": "heads!"}}}
                            },
                            "taskInfo": {"name": "echo"},
                        }
                    }
                },
                "inputDefinitions": {
                    "parameters": {
                        "pipelinechannel--flip-Output": {"parameterType": "STRING"},
                        "pipelinechannel--n": {"parameterType": "NUMBER_INTEGER"},
                    }
                },
            },
            "comp-echo": _step("echo", {"x": "STRING"}),
        },
        executors=("flip", "echo"),
    )


def test_condition_with_cel_elif_shape() -> None:
    flip = "inputs.parameter_values['pipelinechannel--flip-Output']"
    n = "inputs.parameter_values['pipelinechannel--n']"
    doc = _condition_pipeline(f"!({flip} == 'heads') && int({n}) > 2")
    spec = convert(doc, source="cond.yaml").spec
    assert spec.root.inputs["n"].default == 3  # KFP's 3.0 for an integer input
    condition = spec.root.dag.tasks["condition-1"].condition  # type: ignore[union-attr]
    assert condition == Conjunction(
        all=[
            Negation.model_validate(
                {
                    "not": Comparison(
                        op="==",
                        left=TaskOutputBinding.model_validate(
                            {"task_output": {"task": "flip", "output": "Output"}}
                        ),
                        right=ConstantBinding(constant="heads"),
                    )
                }
            ),
            Comparison(
                op=">",
                left=PipelineInputBinding(pipeline_input="n"),
                right=ConstantBinding(constant=2),
            ),
        ]
    )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("inputs.parameter_values['pipelinechannel--n'] == 1 || true == true", "'||'"),
        ("int(inputs.parameter_values['pipelinechannel--flip-Output']) > 1", "int()"),
        ("inputs.parameter_values['pipelinechannel--nope'] == 1", "'pipelinechannel--nope'"),
    ],
)
def test_conditions_outside_the_subset_name_the_task(condition: str, message: str) -> None:
    with pytest.raises(SpecLoadError) as info:
        convert(_condition_pipeline(condition), source="cond.yaml")
    assert message in str(info.value)
    assert info.value.problems[0].task == "condition-1"


def test_cel_parser() -> None:
    ref = "inputs.parameter_values['pipelinechannel--x']"
    assert parse_condition(f"{ref} == true") == Compare(
        "==", Ref("pipelinechannel--x"), Literal(True)
    )
    assert parse_condition(f'!(int({ref}) <= 5) && {ref} != "a"') == And(
        (
            Not(Compare("<=", Ref("pipelinechannel--x", "int"), Literal(5))),
            Compare("!=", Ref("pipelinechannel--x"), Literal("a")),
        )
    )
    with pytest.raises(CelError, match="ends too early"):
        parse_condition(f"{ref} ==")


def test_exit_handler_with_final_status_and_retry() -> None:
    doc = _pipeline(
        root={
            "dag": {
                "tasks": {
                    "exit-handler-1": {
                        "componentRef": {"name": "comp-exit-handler-1"},
                        "taskInfo": {"name": "exit-handler-1"},
                    },
                    "notify": {
                        "componentRef": {"name": "comp-notify"},
                        "dependentTasks": ["exit-handler-1"],
                        "inputs": {
                            "parameters": {
                                "status": {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
                            }
                        },
                        "triggerPolicy": {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"},
                        "taskInfo": {"name": "notify"},
                    },
                }
            }
        },
        components={
            "comp-exit-handler-1": {
                "dag": {
                    "tasks": {
                        "fail": {
                            "componentRef": {"name": "comp-fail"},
                            "retryPolicy": {
                                "maxRetryCount": 3,
                                "backoffDuration": "2s",
                                "backoffFactor": 2.0,
                                "backoffMaxDuration": "3600s",
                            },
                            "taskInfo": {"name": "fail"},
                        }
                    }
                }
            },
            "comp-fail": _step("fail", {}, output=None),
            "comp-notify": _step("notify", {"status": "TASK_FINAL_STATUS"}, output=None),
        },
        executors=("fail", "notify"),
    )
    spec = convert(doc, source="exit.yaml").spec
    notify = spec.root.dag.tasks["notify"]  # type: ignore[union-attr]
    assert notify.trigger == "all_done"
    assert notify.after == ["exit-handler-1"]
    assert notify.inputs["status"] == TaskFinalStatusBinding(task_final_status="exit-handler-1")
    fail = spec.components["exit-handler-1"].dag.tasks["fail"]  # type: ignore[union-attr]
    assert (fail.options.retries, fail.options.backoff_seconds) == (3, 2.0)


def test_oneof_output_of_branches() -> None:
    def branch(number: int) -> dict[str, Any]:
        return {
            "dag": {
                "tasks": {
                    f"echo-{number}": {
                        "componentRef": {"name": "comp-echo"},
                        "inputs": {"parameters": {"x": {"runtimeValue": {"constant": "hi"}}}},
                        "taskInfo": {"name": f"echo-{number}"},
                    }
                },
                "outputs": {
                    "parameters": {
                        f"pipelinechannel--echo-{number}-Output": {
                            "valueFromParameter": {
                                "producerSubtask": f"echo-{number}",
                                "outputParameterKey": "Output",
                            }
                        }
                    }
                },
            },
            "inputDefinitions": {
                "parameters": {"pipelinechannel--flag": {"parameterType": "BOOLEAN"}}
            },
            "outputDefinitions": {
                "parameters": {
                    f"pipelinechannel--echo-{number}-Output": {"parameterType": "STRING"}
                }
            },
        }

    flag = "inputs.parameter_values['pipelinechannel--flag']"
    doc = _pipeline(
        root={
            "inputDefinitions": {"parameters": {"flag": {"parameterType": "BOOLEAN"}}},
            "outputDefinitions": {"parameters": {"Output": {"parameterType": "STRING"}}},
            "dag": {
                "tasks": {
                    f"condition-{n}": {
                        "componentRef": {"name": f"comp-condition-{n}"},
                        "inputs": {"parameters": {"pipelinechannel--flag": _param("flag")}},
                        "triggerPolicy": {
                            "condition": f"{flag} == true" if n == 2 else f"!({flag} == true)"
                        },
                        "taskInfo": {"name": f"condition-{n}"},
                    }
                    for n in (2, 3)
                },
                "outputs": {
                    "parameters": {
                        "Output": {
                            "valueFromOneof": {
                                "parameterSelectors": [
                                    {
                                        "producerSubtask": f"condition-{n}",
                                        "outputParameterKey": f"pipelinechannel--echo-{n}-Output",
                                    }
                                    for n in (2, 3)
                                ]
                            }
                        }
                    }
                },
            },
        },
        components={
            "comp-condition-2": branch(2),
            "comp-condition-3": branch(3),
            "comp-echo": _step("echo", {"x": "STRING"}),
        },
        executors=("echo",),
    )
    spec = convert(doc, source="oneof.yaml").spec
    output = spec.root.dag.outputs["Output"]  # type: ignore[union-attr]
    assert isinstance(output, OneOfBinding)
    assert [b.task_output.task for b in output.oneof] == ["condition-2", "condition-3"]  # type: ignore[union-attr]


def test_a_malformed_importer_and_platform_settings_fail_naming_the_task() -> None:
    doc = _condition_pipeline("inputs.parameter_values['pipelinechannel--n'] == 1")
    doc["deploymentSpec"]["executors"]["exec-flip"] = {"importer": {"artifactUri": {}}}
    with pytest.raises(SpecLoadError, match=r"exec-flip \(used by flip\): importer"):
        convert(doc, source="imp.yaml")
    doc = _condition_pipeline("inputs.parameter_values['pipelinechannel--n'] == 1")
    platform = {
        "platforms": {
            "kubernetes": {
                "deploymentSpec": {"executors": {"exec-echo": {"secretAsEnv": [{"x": 1}]}}}
            }
        }
    }
    with pytest.raises(SpecLoadError, match=r"secretAsEnv.*used by echo"):
        convert([doc, platform], source="k8s.yaml")
    empty = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-echo": {}}}}}}
    assert convert([doc, empty], source="k8s.yaml").spec.name == "demo"


def test_resources_and_env_become_task_options() -> None:
    doc = _condition_pipeline("inputs.parameter_values['pipelinechannel--n'] == 1")
    container = doc["deploymentSpec"]["executors"]["exec-flip"]["container"]
    container["resources"] = {"resourceCpuLimit": "500m", "resourceMemoryLimit": "1Gi"}
    container["env"] = [{"name": "MODE", "value": "fast"}]
    options = convert(doc, source="r.yaml").spec.root.dag.tasks["flip"].options  # type: ignore[union-attr]
    assert (options.num_cpus, options.memory, options.env) == (0.5, 2**30, {"MODE": "fast"})


def test_not_a_kfp_spec() -> None:
    assert not is_kfp_spec({"schema_version": "raypipe/v1", "name": "x"})
    assert not is_kfp_spec([])
    with pytest.raises(SpecLoadError, match="not a KFP PipelineSpec"):
        convert({"name": "x"}, source="x.yaml")


def test_a_malformed_task_is_a_load_error() -> None:
    doc = _condition_pipeline("inputs.parameter_values['pipelinechannel--n'] == 1")
    doc["root"]["dag"]["tasks"]["condition-1"]["inputs"]["parameters"]["pipelinechannel--n"] = {
        "taskOutputParameter": {"producerTask": "flip"}
    }
    with pytest.raises(SpecLoadError, match=r"task 'condition-1' is malformed \(KeyError"):
        convert(doc, source="bad.yaml")


def test_an_f_string_of_pipeline_values_becomes_a_concat() -> None:
    documents = _documents(CORPUS / "flip_coin.yaml")
    spec = convert(documents, source="flip_coin.yaml").spec
    task = spec.components["condition-2"].dag.tasks["print-msg"]  # type: ignore[union-attr]
    assert set(task.inputs) == {"msg"}  # the channel KFP adds for the f-string is folded in
    parts = task.inputs["msg"].concat  # type: ignore[union-attr]
    assert parts[0].constant == "heads and "  # type: ignore[union-attr]
    assert parts[1].pipeline_input == "pipelinechannel--random-num-Output"  # type: ignore[union-attr]
    assert parts[2].constant == " > 5!"  # type: ignore[union-attr]
