"""The UI in a real headless Chromium against the real service: runs list and token prompt,
a run started from the generated form whose graph turns green step by step, a failed step's
error and log, every artifact preview, a comparison, the wide loop, recurring runs.

Screenshots go to ``test-output/ui/`` (``RAYPIPE_UI_SCREENSHOTS``); every test fails on a
console error or an uncaught exception in the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import raypipe
from tests.ui import pipelines
from tests.ui.browser import Console, audit_keyboard, browser_or_fail, contrast_problems, shot
from tests.ui.conftest import TOKEN

_WAIT_MS = 60_000
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_or_fail()


@pytest.fixture(scope="module")
def uploaded(client: raypipe.Client) -> dict[str, str]:
    """Pipeline ids by name, each with one version."""
    found = {}
    for func in (pipelines.stepwise, pipelines.failing, pipelines.artifacts, pipelines.wide):
        found[func.name] = client.upload_pipeline_from_pipeline_func(func).pipeline_id
    return found


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[tuple[Any, Console]]:
    """A fresh page (own storage: no token saved) with console errors collected."""
    context = browser.new_context(base_url=server, viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(_WAIT_MS)
    console = Console(allowed=["401 (Unauthorized)"])  # the request that prompts for a token
    opened.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: console.errors.append(f"page error: {e}"))
    yield opened, console
    context.close()
    assert console.unexpected() == [], console.errors


def _sign_in(page: Any, path: str = "/#/runs") -> None:
    page.goto(path)
    dialog = page.locator("#token-dialog")
    dialog.locator("input").fill(TOKEN)
    dialog.get_by_role("button", name="Use token").click()


def _state(page: Any, node: str) -> str:
    return str(page.locator(f'.node[data-id="{node}"]').get_attribute("data-state"))


def _wait_state(page: Any, node: str, state: str) -> None:
    page.wait_for_selector(f'.node[data-id="{node}"][data-state="{state}"]', timeout=_WAIT_MS)


def test_a_refusal_that_comes_back_after_signing_in_is_retried_not_prompted_again(
    page: tuple[Any, Console],
) -> None:
    """A page sends several requests at once without a token: the first refusal prompts;
    one refused after the token was entered is sent again with it (it used to open a
    second prompt, "That token was refused", that nobody answered)."""
    tab, _ = page
    held: list[Any] = []

    def hold(route: Any) -> None:  # the first request waits; any other goes through
        if held:
            route.continue_()
        else:
            held.append(route)

    tab.route("**/apis/v2beta1/experiments?*", hold)  # the runs page's list of experiments
    _sign_in(tab)  # prompted by the page's other request, refused meanwhile
    tab.wait_for_function("localStorage.getItem('raypipe.token') !== null")
    assert len(held) == 1
    held[0].continue_()  # sent before the token was entered: the service refuses it
    tab.get_by_label("Experiment").wait_for()  # the page got its experiments after all
    assert not tab.locator("#token-dialog").is_visible()


def test_token_prompt_then_runs_list_with_filters(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, _ = page
    ok = client.create_run_from_pipeline_func(pipelines.artifacts, run_name="listed-ok")
    client.wait_for_run_completion(ok.run_id, timeout=120)
    _sign_in(tab)
    row = tab.locator(f'tr[data-run="{ok.run_id}"]')
    row.wait_for()
    assert "succeeded" in row.inner_text()
    tab.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    new = client.create_run_from_pipeline_func(pipelines.failing, run_name="listed-new")
    added = tab.locator(f'tr[data-run="{new.run_id}"]')
    added.wait_for()  # a new run joins the list by itself: its stream told it
    tab.wait_for_function(
        f"document.querySelector('tr[data-run=\"{new.run_id}\"] .badge').textContent === 'failed'"
    )
    assert tab.locator("tbody tr").first.get_attribute("data-run") == new.run_id  # newest first
    assert tab.evaluate("window.sameDocument === true")
    tab.get_by_label("State").select_option("FAILED")
    tab.wait_for_function(
        f"!document.querySelector('tr[data-run=\"{ok.run_id}\"]')", timeout=_WAIT_MS
    )
    tab.get_by_label("State").select_option("SUCCEEDED")
    row.wait_for()
    shot(tab, "runs-list")


def test_a_run_started_from_the_form_turns_green_step_by_step(
    page: tuple[Any, Console], uploaded: dict[str, str], tmp_path: Path
) -> None:
    tab, _ = page
    gates = tmp_path / "gates"
    gates.mkdir()
    _sign_in(tab, f"/#/pipelines/{uploaded['ui-stepwise']}")
    form = tab.locator("form.generated-form")
    form.locator('[name="gates"]').fill(str(gates))
    assert form.locator('[name="start"]').input_value() == "1"  # the default, filled in
    form.locator('[name="display_name"]').fill("stepwise from the form")
    form.get_by_role("button", name="Start run").click()
    tab.wait_for_url(re.compile(r"#/runs/[0-9a-f]+$"))
    tab.locator(".node").first.wait_for()
    tab.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    first, second = "exit-handler-1/gate", "exit-handler-1/gate-2"
    _wait_state(tab, first, "RUNNING")  # a gated step that prints nothing: running, not ended
    assert _state(tab, second) == "PENDING"
    tab.locator(f'.node[data-id="{first}"]').click()
    panel = tab.locator(".step-panel")
    panel.locator("h2 .state-RUNNING").wait_for()
    started = panel.locator("dl.facts dt", has_text="started")
    assert started.count() == 1 and panel.locator("dl.facts dd").first.inner_text()
    assert "attempt 1: running since" in panel.locator("ol.attempts").inner_text()
    shot(tab, "run-graph-waiting")
    (gates / "first").touch()
    _wait_state(tab, first, "SUCCEEDED")
    assert _state(tab, second) in ("PENDING", "RUNNING")  # green node by node
    shot(tab, "run-graph-first-green")
    (gates / "second").touch()
    tab.wait_for_selector("h1 .state-SUCCEEDED", timeout=_WAIT_MS)
    _wait_state(tab, "exit-handler-1/total", "SUCCEEDED")
    _wait_state(tab, "farewell", "SUCCEEDED")
    # start=1: gate-2 gives 3, not > 3: the Else branch ran, the If branch was skipped
    _wait_state(tab, "exit-handler-1/condition-3/announce", "SKIPPED")
    _wait_state(tab, "exit-handler-1/condition-4/announce-2", "SUCCEEDED")
    loop = tab.locator('.node[data-id="exit-handler-1/for-loop-2"]')
    assert "3 ok" in (loop.text_content() or "")
    loop.click()  # unfold: the body once, standing for its three iterations
    inner = tab.locator('.node[data-id="exit-handler-1/for-loop-2/square"]')
    inner.wait_for()
    assert "3 ok" in (inner.text_content() or "")
    assert tab.evaluate("window.sameDocument === true")  # updated in place, not reloaded
    shot(tab, "run-graph-done")


def test_a_failed_step_shows_its_error_traceback_and_log(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, _ = page
    run = client.create_run_from_pipeline_func(pipelines.failing, arguments={"rows": 7})
    client.wait_for_run_completion(run.run_id, timeout=120)
    _sign_in(tab, f"/#/runs/{run.run_id}")
    _wait_state(tab, "parse-rows", "FAILED")
    assert _state(tab, "never") in ("UPSTREAM_FAILED", "CANCELED")
    tab.locator('.node[data-id="parse-rows"]').focus()  # reachable from the keyboard
    tab.keyboard.press("Enter")
    panel = tab.locator(".step-panel")
    panel.get_by_text("bad input row 7").first.wait_for()
    assert "ValueError" in panel.inner_text()
    assert panel.locator("ol.attempts > li").count() == 2  # a retry, failed the same way
    assert "raise ValueError" in panel.locator("pre.traceback").first.inner_text()
    assert "retries=1" in panel.inner_text() and "num_cpus=1" in panel.inner_text()
    log = panel.locator("pre.log")
    tab.wait_for_function(
        "document.querySelector('pre.log').textContent.includes('row 7 looks wrong')"
    )
    assert "reading the input" in log.inner_text()
    shot(tab, "failed-step")


def test_every_artifact_kind_previews(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, console = page
    console.allowed.append("Blocked script execution in 'about:srcdoc'")  # the sandbox at work
    run = client.create_run_from_pipeline_func(pipelines.artifacts)
    client.wait_for_run_completion(run.run_id, timeout=120)
    _sign_in(tab, f"/#/runs/{run.run_id}")
    _wait_state(tab, "report", "SUCCEEDED")
    tab.locator('.node[data-id="report"]').click()
    panel = tab.locator(".step-panel")
    cards = panel.locator(".artifact")
    cards.first.wait_for()

    def open_preview(output: str) -> Any:
        card = cards.filter(has=tab.locator("strong", has_text=re.compile(f"^{output}$")))
        card.get_by_role("button", name="Preview").click()
        return card.locator(".preview")

    notes = open_preview("notes")
    notes.locator(".markdown h1").wait_for()
    assert notes.locator("h1").inner_text() == "Model report"
    assert notes.locator("script").count() == 0  # raw HTML is shown as text, not run
    page_preview = open_preview("page")
    frame = page_preview.locator("iframe")
    frame.wait_for()
    assert frame.get_attribute("sandbox") == ""
    assert tab.frame_locator("iframe.html-preview").locator("#t").inner_text() == "Embedded page"
    assert tab.title() != "owned"
    scores = open_preview("scores")
    scores.locator("table.metrics").wait_for()
    assert "accuracy" in scores.inner_text() and "0.9300" in scores.inner_text()
    quality = open_preview("quality")
    quality.locator("table.confusion").wait_for()
    cells = quality.locator("table.confusion td").all_inner_texts()
    assert cells == ["8", "2", "1", "9"]
    assert quality.locator("svg.roc polyline").count() == 1
    table = open_preview("table")
    table.locator("table.data").wait_for()
    assert table.locator("tbody tr").count() == 20
    assert "first 20 of 50 rows" in table.inner_text()
    columns = open_preview("columns")
    columns.locator("table.data").wait_for()
    assert columns.locator("thead th").all_inner_texts() == ["k", "v"]
    assert "first 20 of 30 rows" in columns.inner_text()
    shot(tab, "artifact-previews")
    card = cards.filter(has=tab.locator("strong", has_text=re.compile("^table$")))
    with tab.expect_download() as download:
        card.get_by_role("button", name="Download").click()
    saved = download.value.path()
    assert Path(saved).read_text().startswith("id,name,score")


def test_two_runs_compare_side_by_side(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, _ = page
    runs = [
        client.create_run_from_pipeline_func(pipelines.failing, arguments={"rows": n})
        for n in (3, 4)
    ]
    for run in runs:
        client.wait_for_run_completion(run.run_id, timeout=120)
    _sign_in(tab)
    for run in runs:
        tab.locator(f'tr[data-run="{run.run_id}"] input[type=checkbox]').check()
    tab.get_by_role("button", name="Compare 2 runs").click()
    tab.wait_for_url(re.compile("#/compare"))
    row = tab.locator("tr.differs", has=tab.locator("th", has_text="rows"))
    row.wait_for()
    assert sorted(row.locator("td").all_inner_texts()) == ["3", "4"]  # in the list's order
    shot(tab, "compare")


def test_a_thousand_item_loop_is_one_node_until_unfolded(
    page: tuple[Any, Console], uploaded: dict[str, str]
) -> None:
    tab, _ = page
    _sign_in(tab, f"/#/pipelines/{uploaded['ui-wide']}")
    loop = tab.locator('.node[data-id="for-loop-1"]')
    loop.wait_for()
    assert tab.locator(".node").count() == 1
    assert "1000 items" in (loop.text_content() or "")
    loop.click()
    tab.locator('.node[data-id="for-loop-1/one"]').wait_for()
    assert tab.locator(".node").count() == 2


def test_a_thousand_item_loop_run_is_one_node_with_its_iterations_by_state(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, _ = page
    run = client.create_run_from_pipeline_func(pipelines.wide)
    _sign_in(tab, f"/#/runs/{run.run_id}")
    loop = tab.locator('.node[data-id="for-loop-1"]')
    loop.wait_for()
    counts = "document.querySelector('.node[data-id=\"%s\"] .counts').textContent"
    tab.wait_for_function(f"{counts % 'for-loop-1'} === '1000 ok'")  # live, then done
    assert tab.locator(".node").count() == 1  # one box, not 1,000
    tab.locator("h1 .state-SUCCEEDED").wait_for()
    shot(tab, "run-thousand-loop")
    loop.focus()
    tab.keyboard.press("Enter")  # unfold from the keyboard
    inner = tab.locator('.node[data-id="for-loop-1/one"]')
    inner.wait_for()
    assert "1000 ok" in (inner.text_content() or "")
    assert tab.locator(".node").count() == 2
    inner.click()
    panel = tab.locator(".step-panel")
    panel.get_by_text("1000 iterations").wait_for()
    assert panel.locator("ul.iterations > li").count() == 1000
    panel.get_by_role("button", name="for-loop-1[999]/one").click()
    panel.locator("h2 .state-SUCCEEDED").wait_for()
    assert "for-loop-1[999]/one" in panel.inner_text()
    shot(tab, "run-thousand-loop-unfolded")
    loop.focus()
    tab.keyboard.press("Enter")  # and folded again, from the keyboard
    inner.wait_for(state="detached")
    assert tab.evaluate("document.activeElement.dataset.id") == "for-loop-1"  # focus kept


def test_recurring_runs_are_created_disabled_enabled_and_deleted(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, _ = page
    _sign_in(tab, "/#/recurring")
    tab.get_by_label("Pipeline").select_option(label="ui-failing / v1")
    form = tab.locator("form.generated-form", has=tab.locator('[name="rows"]'))
    form.wait_for()  # the chosen version's form, not the one it replaces
    form.locator('[name="display_name"]').fill("nightly check")
    form.locator('[name="interval_second"]').fill("86400")
    form.get_by_role("button", name="Create recurring run").click()
    row = tab.locator("tr", has_text="nightly check")
    row.get_by_role("button", name="Disable").wait_for()
    assert "every 86400 s" in row.inner_text()
    row.get_by_role("button", name="Disable").click()
    row.get_by_role("button", name="Enable").wait_for()
    assert "disabled" in row.inner_text()
    shot(tab, "recurring-runs")
    tab.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    client.enable_recurring_run(str(row.get_attribute("data-recurring")))  # elsewhere
    row.get_by_role("button", name="Disable").wait_for()  # the page follows by itself
    assert "enabled" in row.inner_text() and tab.evaluate("window.sameDocument === true")
    tab.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete").click()
    tab.wait_for_function("!document.body.innerText.includes('nightly check')")


def test_experiments_are_created_and_an_artifacts_lineage_opens_from_its_step(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, _ = page
    _sign_in(tab, "/#/experiments")
    tab.get_by_label("experiment name").fill("ui-experiment")
    tab.get_by_role("button", name="Create experiment").click()
    tab.get_by_role("link", name="ui-experiment").wait_for()
    tab.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    row = tab.locator("tr", has=tab.get_by_role("link", name="ui-experiment"))
    count = f'tr[data-experiment="{row.get_attribute("data-experiment")}"] td.count'
    assert tab.locator(count).inner_text() == "0"
    run = client.create_run_from_pipeline_func(pipelines.artifacts, experiment_name="ui-experiment")
    tab.wait_for_function(f"document.querySelector('{count}').textContent.startsWith('1')")
    client.wait_for_run_completion(run.run_id, timeout=120)
    tab.wait_for_function(f"document.querySelector('{count}').textContent === '1'")  # ended
    assert tab.evaluate("window.sameDocument === true")  # counted live, not reloaded
    tab.goto(f"/#/runs/{run.run_id}")
    _wait_state(tab, "report", "SUCCEEDED")
    tab.locator('.node[data-id="report"]').click()
    card = tab.locator(".artifact").filter(
        has=tab.locator("strong", has_text=re.compile("^table$"))
    )
    card.get_by_role("link", name="Lineage").click()
    tab.get_by_role("heading", name="Upstream: what made it").wait_for()
    upstream = tab.locator("table.lineage").first
    upstream.locator("tbody tr").first.wait_for()
    assert "report" in upstream.inner_text()
    shot(tab, "lineage")


def test_a_compiled_pipeline_is_uploaded_from_the_browser(
    page: tuple[Any, Console], client: raypipe.Client, tmp_path: Path
) -> None:
    tab, console = page
    console.allowed.append("status of 400")  # the broken file's refusal, shown on the page
    good, bad = tmp_path / "uploaded-failing.yaml", tmp_path / "broken.yaml"
    raypipe.compile(pipelines.failing, str(good))
    bad.write_text("schema_version: raypipe/v1\nname: broken\nroot: {}\n")
    _sign_in(tab, "/#/pipelines")
    form = tab.locator("form.inline-form")
    form.locator("input[type=file]").set_input_files(str(bad))
    form.get_by_role("button", name="Upload pipeline").click()
    form.locator(".error").wait_for()
    assert "root" in form.locator(".error").inner_text()
    assert client.get_pipeline_id("broken") is None  # nothing half stored
    form.locator("input[type=file]").set_input_files(str(good))
    form.get_by_role("button", name="Upload pipeline").click()
    tab.locator('.node[data-id="parse-rows"]').wait_for()
    assert client.get_pipeline_id("uploaded-failing") is not None


def test_every_page_works_from_the_keyboard_and_fits_a_laptop_screen(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str], server: str
) -> None:
    tab, _ = page
    tab.set_viewport_size({"width": 1280, "height": 800})
    made = client.create_run_from_pipeline_func(pipelines.artifacts)
    failed = [
        client.create_run_from_pipeline_func(pipelines.failing, arguments={"rows": n})
        for n in (1, 2)
    ]
    for run in (made, *failed):
        client.wait_for_run_completion(run.run_id, timeout=120)
    listed = httpx.get(
        f"{server}/apis/v2beta1/runs/{made.run_id}/artifacts",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()["artifacts"]
    table = next(a["uri"] for a in listed if a["output"] == "table")
    hundred = client.upload_pipeline_from_pipeline_func(pipelines.hundred_steps()).pipeline_id
    _sign_in(tab, "/#/runs?size=5")
    tab.locator("tr[data-run]").first.wait_for()
    pages = {
        "runs": ("/#/runs?size=5", "tr[data-run]"),
        "run": (f"/#/runs/{made.run_id}", '.node[data-id="report"]'),
        "pipelines": ("/#/pipelines", "tbody[data-loaded]"),
        "pipeline": (f"/#/pipelines/{uploaded['ui-stepwise']}", "form.generated-form"),
        "pipeline-100-steps": (f"/#/pipelines/{hundred}", '.node[data-id="add-100"]'),
        "experiments": ("/#/experiments", "tbody[data-loaded]"),
        "recurring": ("/#/recurring", "tbody[data-loaded] && form.generated-form"),
        "compare": (f"/#/compare?runs={failed[0].run_id},{failed[1].run_id}", "table.compare"),
        "lineage": (f"/#/lineage?run={made.run_id}&uri={quote(table)}", "table.lineage"),
    }
    problems = {}
    for name, (path, ready) in pages.items():
        tab.goto(path)
        for selector in ready.split(" && "):  # what the page shows once it is all there
            tab.locator(selector).first.wait_for()
        if name == "run":  # the step panel too, with an artifact previewed
            tab.locator('.node[data-id="report"]').click()
            card = tab.locator(".artifact").filter(
                has=tab.locator("strong", has_text=re.compile("^table$"))
            )
            card.get_by_role("button", name="Preview").click()
            card.locator("table.data").wait_for()
        shot(tab, f"laptop-{name}")
        found = audit_keyboard(tab, max_tabs=300)
        smallest = tab.evaluate(
            "Math.min(...[...document.querySelectorAll('.node .label')]"
            ".map((t) => t.getBoundingClientRect().height), 99)"
        )
        if smallest < 11:  # a graph's 13 px labels drawn smaller than this are hard to read
            found.append(f"graph labels drawn {smallest:.1f} px high")
        if tab.evaluate("document.documentElement.scrollWidth") > 1280:
            found.append("wider than a 1280 px screen")
        if found:
            problems[name] = found
    assert problems == {}


def test_the_runs_list_filters_by_pipeline_across_its_versions(
    page: tuple[Any, Console],
    client: raypipe.Client,
    uploaded: dict[str, str],
    server: str,
    tmp_path: Path,
) -> None:
    tab, _ = page
    pipeline_id = uploaded["ui-failing"]
    raypipe.compile(pipelines.failing, str(tmp_path / "failing.yaml"))
    v2 = client.upload_pipeline_version(tmp_path / "failing.yaml", "v2", pipeline_id=pipeline_id)
    v1 = next(
        v
        for v in client.list_pipeline_versions(pipeline_id).pipeline_versions
        if v.display_name == "v1"
    ).pipeline_version_id
    runs = {
        name: client.run_pipeline(None, name, version_id=version).run_id
        for name, version in (("by-v1", v1), ("by-v2", v2.pipeline_version_id))
    }
    other = client.run_pipeline(None, "by-other", pipeline_id=uploaded["ui-artifacts"]).run_id
    listed = httpx.get(
        f"{server}/apis/v2beta1/runs",
        params={"pipeline_id": pipeline_id},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()["runs"]
    ids = {r["run_id"] for r in listed}
    assert set(runs.values()) <= ids and other not in ids  # the REST API filters too
    _sign_in(tab)
    tab.locator(f'tr[data-run="{other}"]').wait_for()
    tab.get_by_label("Pipeline").select_option(label="ui-failing: every version")
    tab.locator(f'tr[data-run="{other}"]').wait_for(state="detached")
    for run_id in runs.values():
        tab.locator(f'tr[data-run="{run_id}"]').wait_for()
    assert "pipeline=" in tab.url  # a link to the filtered list
    shot(tab, "runs-by-pipeline")
    tab.get_by_label("Pipeline").select_option(label="ui-failing / v2")
    tab.locator(f'tr[data-run="{runs["by-v1"]}"]').wait_for(state="detached")
    assert tab.locator(f'tr[data-run="{runs["by-v2"]}"]').count() == 1


_NODE_STATES = [
    "SUCCEEDED",
    "FAILED",
    "RUNNING",
    "PENDING",
    "CACHED",
    "SKIPPED",
    "CANCELED",
    "UPSTREAM_FAILED",
    "NOT_RUN",
]
_BADGES = [*_NODE_STATES, "CANCELING", "ENABLED", "DISABLED"]

# A badge of every state the pages show, beside the page's own (the rules are the same).
_SWATCHES = """(states) => {
  const box = document.createElement('p');
  for (const state of states) {
    const badge = document.createElement('span');
    badge.className = `badge state-${state}`;
    badge.textContent = state.replaceAll('_', ' ').toLowerCase();
    box.append(badge, ' ');
  }
  document.querySelector('main').append(box);
}"""


def test_text_on_every_state_colour_and_control_has_aa_contrast(
    page: tuple[Any, Console], client: raypipe.Client, uploaded: dict[str, str]
) -> None:
    tab, _ = page
    run = client.create_run_from_pipeline_func(pipelines.failing, arguments={"rows": 5})
    client.wait_for_run_completion(run.run_id, timeout=120)
    problems: dict[str, list[str]] = {}
    _sign_in(tab, "/#/runs")
    tab.locator("tr[data-run]").first.wait_for()
    tab.evaluate(_SWATCHES, _BADGES)
    problems["runs"] = contrast_problems(tab)
    tab.goto(f"/#/runs/{run.run_id}")
    _wait_state(tab, "parse-rows", "FAILED")
    tab.locator('.node[data-id="parse-rows"]').click()
    tab.locator(".step-panel ol.attempts").wait_for()
    problems["run"] = contrast_problems(tab)
    for state in _NODE_STATES:  # every node drawn in each state in turn, cached too
        for cached in (False, True):
            tab.evaluate(
                "([state, cached]) => document.querySelectorAll('.node').forEach((g) => {"
                "  g.setAttribute('data-state', state); g.classList.toggle('cached', cached); })",
                [state, cached],
            )
            problems[f"graph {state}{' cached' if cached else ''}"] = contrast_problems(tab)
    for name, path, ready in [
        ("pipeline", f"/#/pipelines/{uploaded['ui-stepwise']}", "form.generated-form"),
        ("experiments", "/#/experiments", "tbody[data-loaded]"),
        ("recurring", "/#/recurring", "tbody[data-loaded]"),
    ]:
        tab.goto(path)
        tab.locator(ready).first.wait_for()
        problems[name] = contrast_problems(tab)
    failing = [f"{where}: {problem}" for where, found in problems.items() for problem in found]
    assert not failing, "\n".join(failing)
