"""The dashboard in a real browser: Debian's Chromium driven by Playwright against a real `optio serve`.

Outbound network is blocked for every page (anything not on 127.0.0.1 is aborted and recorded), and each page
visited must log no console error and have no failed request. Screenshots for the README are written to
`docs/screenshots/`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer, free_port
from tests.support.tcp_proxy import CuttableProxy

CHROMIUM = os.environ.get("OPTIO_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ADMIN_PASSWORD = "browser-admin-password"
VIEWER_PASSWORD = "browser-viewer-password"

if not Path(CHROMIUM).exists() and os.environ.get("CI"):
    pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium", pytrace=False)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")]
sync_api = pytest.importorskip("playwright.sync_api")


class Watch:
    """Blocks and records outbound requests; records console errors, page errors and failed requests."""

    def __init__(self, context: Any) -> None:
        self.problems: list[str] = []
        self.outbound: list[str] = []
        self.allowed_failures: set[str] = set()
        self.expected: list[str] = []  # console errors a test causes on purpose
        context.route("**/*", self._route)
        context.on("page", self.attach)

    def _route(self, route: Any) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            self.outbound.append(route.request.url)
            route.abort()
            return
        route.continue_()

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" and not any(e in m.text for e in self.expected) else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: self.problems.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400 and urlsplit(r.url).path not in self.allowed_failures else None)

    def _failed(self, request: Any) -> None:
        # Leaving a page cancels what it still loads (ERR_ABORTED), and a live stream is cut when its page is left
        # or a test cuts it: neither is a failure. A blocked or refused request fails with another code.
        failure = request.failure or ""
        if failure == "net::ERR_ABORTED" or ("/stream" in request.url and failure in (
                "net::ERR_CONNECTION_RESET", "net::ERR_EMPTY_RESPONSE", "net::ERR_INCOMPLETE_CHUNKED_ENCODING")):
            return
        self.problems.append(f"request failed: {request.url} {request.failure}")

    def check(self) -> None:
        assert not self.outbound, f"outbound requests attempted: {self.outbound}"
        assert not self.problems, self.problems


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("browser")
    server = OptioServer(tmp / "data", env={"OPTIO_LOGIN_RATE_LIMIT": "1000"})
    proxy_port = free_port()
    server.extra_env["OPTIO_ALLOWED_HOSTS"] = f"127.0.0.1:{server.port},127.0.0.1:{proxy_port}"
    server.start()
    proxy = CuttableProxy(server.port, proxy_port)
    playwright = sync_api.sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    try:
        assert server.api("PUT", "/api/me/password", json={"password": ADMIN_PASSWORD}).status_code == 204
        server.api("PUT", "/api/members/vic", json={"role": "viewer"}).raise_for_status()
        assert server.api("PUT", "/api/users/vic/password", json={"password": VIEWER_PASSWORD}).status_code == 204
        yield {"server": server, "browser": browser, "proxy": proxy, "tmp": tmp}
    finally:
        browser.close()
        playwright.stop()
        proxy.close()
        server.stop()


def signed_in(world: dict[str, Any], username: str = "admin", password: str = ADMIN_PASSWORD,
              base_url: str | None = None, color_scheme: str = "light") -> tuple[Any, Any, Watch]:
    context = world["browser"].new_context(base_url=base_url or world["server"].url, timezone_id="Asia/Tokyo",
                                           viewport={"width": 1280, "height": 900}, color_scheme=color_scheme)
    watch = Watch(context)
    page = context.new_page()
    page.goto("/")
    assert page.url.endswith("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))
    page.wait_for_load_state("load")
    return context, page, watch


AGENT = r"""
echo '{"type":"thinking","text":"Where is the fix needed?"}'
echo '{"type":"tool_use","name":"Read","input_summary":"README.md","tool_id":"t1"}'
echo '{"type":"tool_result","output":"# demo","tool_id":"t1"}'
for i in 1 2 3 4 5 6; do echo "agent line $i of attempt ${OPTIO_ATTEMPT:-?}"; sleep 0.4; done
if [ -n "$OPTIO_RESUME_REASON" ]; then echo fixed > fixed.txt; else echo work > work.txt; fi
echo '{"type":"usage","input_tokens":1200,"output_tokens":340,"cost_usd":0.0123}'
"""
CI = 'test -f fixed.txt || { echo "CI FAILED: fixed.txt is missing"; exit 1; }'


def wait_until(page: Any, predicate: str, timeout: float = 60.0) -> None:
    """Poll a JS predicate (Playwright's wait_for_function evaluates strings, which the pages' CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        page.wait_for_timeout(100)


def stages(page: Any) -> str:
    return page.eval_on_selector_all(
        ".pipeline li", "els => els.map(e => e.className + ':' + e.textContent.trim()).join(' | ')")


def test_repo_task_loop_live_in_the_browser(world: dict[str, Any]) -> None:
    server = world["server"]
    context, page, watch = signed_in(world)
    remote = make_remote(world["tmp"])
    # Add a repo through its form.
    page.get_by_role("link", name="Repos", exact=True).click()
    page.get_by_label("Remote (URL, or a path under the allowed local roots)").fill(str(remote))
    page.get_by_label("Name").fill("demo")
    page.get_by_label("CI command").fill(CI)
    page.get_by_role("button", name="Add repo").click()
    page.wait_for_url(re.compile(r"/repos/\d+$"))
    # Create a task whose CI fails once: the first attempt does not write fixed.txt, the resume does.
    page.get_by_label("Title").fill("Make CI green")
    page.get_by_label("Prompt").fill("Write fixed.txt")
    page.get_by_label("Script agent command").fill(AGENT)
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r"/tasks/\d+$"))
    task_id = int(page.url.rsplit("/", 1)[1])
    page.evaluate("window.__sameDocument = true")
    # Record every pipeline strip the page shows, without reloading.
    page.evaluate("""() => { window.__strips = [];
        const note = () => window.__strips.push(Array.from(document.querySelectorAll('.pipeline li'))
            .map(e => e.className + ':' + e.textContent.trim()).join(' | '));
        note();
        new MutationObserver(note).observe(document.querySelector('main'), {subtree: true, childList: true}); }""")
    log = page.locator("#log")
    log.get_by_text("agent line 1 of attempt 1").wait_for(timeout=30_000)
    # The lines arrive while the agent is still running.
    assert page.locator("#log [data-seq]").count() < 30
    log.get_by_text("agent line 6 of attempt 1").wait_for(timeout=30_000)
    assert log.locator("details.thinking summary").first.text_content() == "thinking…"
    assert not log.locator("details.thinking").first.evaluate("d => d.open")
    assert log.locator("details.tool summary").first.text_content() == "→ Read"
    page.locator(".pipeline li.current[data-stage='merged']").wait_for(timeout=120_000)
    strips: list[str] = page.evaluate("window.__strips")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    red = next(i for i, s in enumerate(strips) if re.search(r"CI ✗", s))
    resumed = next(i for i, s in enumerate(strips) if "resumed 1x" in s)
    merged = next(i for i, s in enumerate(strips) if "current:merged" in s)
    assert red <= resumed <= merged, strips
    assert "CI ✗ ✓" in strips[merged]
    # The PR panel keeps the first attempt's failing CI output.
    first_ci = page.locator(".pr-panel details.ci").first
    assert "failing" in first_ci.locator("summary").text_content()
    assert "CI FAILED: fixed.txt is missing" in first_ci.locator("pre").text_content()
    assert server.api("GET", f"/api/repo-tasks/{task_id}").json()["state"] == "completed"
    # The live log shows both attempts' lines, each once.
    log.get_by_text("agent line 6 of attempt 2").wait_for(timeout=30_000)
    seqs = page.eval_on_selector_all("#log [data-seq]", "els => els.map(e => +e.dataset.seq)")
    assert seqs == sorted(set(seqs))
    # Times are shown in the viewer's timezone (Tokyo here), with the UTC time kept as the title.
    stamp = page.locator("time[datetime]").first
    assert stamp.get_attribute("title").endswith("UTC") and "UTC" not in stamp.text_content()
    world["task_id"] = task_id
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.querySelector('.timeline').open = false")
    page.screenshot(path=str(SCREENSHOTS / "task.png"), full_page=True)
    watch.check()
    context.close()


def test_run_a_job_from_its_params_form(world: dict[str, Any]) -> None:
    server = world["server"]
    server.api("POST", "/api/jobs", json={
        "name": "greet", "prompt_template": "Hello {{WHO}} from {{PLACE}}",
        "params_schema": {"WHO": {"required": True, "description": "who to greet"},
                          "PLACE": {"default": "Optio"}},
        "agent_config": {"command": 'sleep 1; cat "$OPTIO_PROMPT_FILE"; echo; '
                                    'echo \'{"type":"usage","input_tokens":50,"output_tokens":9}\''}}
    ).raise_for_status()
    context, page, watch = signed_in(world)
    page.goto("/jobs")
    page.get_by_role("link", name="greet").click()
    assert page.get_by_label("PLACE").input_value() == "Optio"
    page.get_by_label("WHO").fill("browser")
    page.get_by_role("button", name="Run greet").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.locator(".facts [data-state='completed']").wait_for(timeout=60_000)
    page.locator("#log").get_by_text("Hello browser from Optio").wait_for(timeout=10_000)
    run_id = int(page.url.rsplit("/", 1)[1])
    assert server.api("GET", f"/api/runs/{run_id}").json()["params"] == {"WHO": "browser", "PLACE": "Optio"}
    world["run_id"] = run_id
    watch.check()
    context.close()


def test_viewer_sees_no_mutating_controls_and_is_refused(world: dict[str, Any]) -> None:
    server = world["server"]
    run = server.api("POST", "/api/jobs/greet/runs", json={"params": {"WHO": "x"}}).json()
    server.wait_state(f"/api/runs/{run['id']}", {"completed"})
    failing = server.api("POST", "/api/jobs", json={"name": "boom", "prompt_template": "p",
                                                    "agent_config": {"command": "exit 3"}}).json()
    failed = server.api("POST", f"/api/jobs/{failing['id']}/runs", json={}).json()
    server.wait_state(f"/api/runs/{failed['id']}", {"failed"})
    context, page, watch = signed_in(world, "vic", VIEWER_PASSWORD)
    paths = ["/", "/tasks", "/jobs", f"/jobs/{failing['id']}", f"/runs/{failed['id']}", "/repos", "/tickets",
             "/costs", "/secrets", "/settings"]
    if "task_id" in world:
        paths.append(f"/tasks/{world['task_id']}")
    for path in paths:
        page.goto(path)
        forms = page.eval_on_selector_all("form[method=post]", "fs => fs.map(f => f.getAttribute('action'))")
        # A viewer's own API keys are theirs to manage, as in the API (get_self_ctx); nothing else.
        expected = ["/logout", "/settings/apikeys"] if path == "/settings" else ["/logout"]
        assert sorted(forms) == expected, (path, forms)
        assert page.locator("[data-role]").text_content() == "viewer"
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    for action, data in ((f"/runs/{failed['id']}/retry", {}), ("/jobs/boom/run", {}),
                         ("/tasks", {"action": "retry", "ids": f"job_run:{failed['id']}"}),
                         ("/secrets", {"name": "X", "value": "long-enough-value"})):
        res = page.request.post(action, form={"csrf_token": csrf, **data}, max_redirects=0)
        assert res.status == 403, (action, res.status)
    assert server.api("GET", f"/api/runs/{failed['id']}").json()["state"] == "failed"
    assert len(server.api("GET", "/api/runs", params={"job": "boom"}).json()["items"]) == 1
    watch.check()
    context.close()


def test_big_live_log_survives_a_cut_connection(world: dict[str, Any]) -> None:
    """20,000 lines render without freezing the page, and a stream cut mid-way resumes without gaps or doubles."""
    server, proxy = world["server"], world["proxy"]
    burst = "i=$1; while [ $i -le $2 ]; do echo \"log line $i\"; i=$((i+1)); done"
    server.api("POST", "/api/jobs", json={"name": "chatty", "prompt_template": "p", "agent_config": {
        "command": f"b() {{ {burst}; }}; b 1 10000; sleep 6; b 10001 20000"}}).raise_for_status()
    context, page, watch = signed_in(world, base_url=proxy.url)
    run = server.api("POST", "/api/jobs/chatty/runs", json={}).json()
    page.goto(f"/runs/{run['id']}")
    # A frame-gap monitor: the page must keep painting while the lines arrive.
    page.evaluate("""() => { window.__maxGap = 0; let last = performance.now();
        const tick = (t) => { window.__maxGap = Math.max(window.__maxGap, t - last); last = t;
                              requestAnimationFrame(tick); }; requestAnimationFrame(tick); }""")
    wait_until(page, "() => document.querySelectorAll('#log [data-seq]').length >= 10000")
    assert page.evaluate("document.getElementById('log').dataset.finished") is None, "cut before the end"
    watch.expected.append("net::ERR_INCOMPLETE_CHUNKED_ENCODING")  # the browser reports the cut stream
    assert proxy.cut() > 0
    wait_until(page, "() => document.getElementById('log').dataset.finished === 'true'")
    wait_until(page, "() => document.querySelectorAll('#log [data-seq]').length >= 20000")
    assert int(page.evaluate("document.getElementById('log').dataset.reconnects")) >= 1
    texts = page.eval_on_selector_all("#log [data-seq]", "els => els.map(e => e.textContent)")
    seqs = page.eval_on_selector_all("#log [data-seq]", "els => els.map(e => +e.dataset.seq)")
    assert seqs == list(range(1, len(seqs) + 1))
    assert [t for t in texts if t.startswith("log line ")] == [f"log line {i}" for i in range(1, 20001)]
    assert page.evaluate("window.__maxGap") < 2000, "the page froze while rendering"
    watch.check()
    context.close()


def test_pages_offline_without_errors_and_screenshots(world: dict[str, Any]) -> None:
    server = world["server"]
    context, page, watch = signed_in(world)
    repo = server.api("GET", "/api/repos/demo").json() if "task_id" in world else None
    pr_id = server.api("GET", f"/api/repo-tasks/{world['task_id']}").json()["pr_id"] if "task_id" in world else None
    server.api("POST", "/api/tickets", json={"title": "Add a changelog"}).raise_for_status()
    server.api("PUT", "/api/secrets/DEMO_TOKEN", json={"value": "a-long-secret-value"}).raise_for_status()
    paths = ["/", "/tasks", "/tasks?type=repo_task&state=completed", "/jobs", "/jobs/greet", "/repos", "/tickets",
             "/costs", "/secrets", "/settings"]
    if repo:
        paths += [f"/repos/{repo['id']}", f"/prs/{pr_id}", f"/tasks/{world['task_id']}"]
    if "run_id" in world:
        paths.append(f"/runs/{world['run_id']}")
    for path in paths:
        page.goto(path)
        page.wait_for_load_state("networkidle") if path not in ("/",) and "/tasks/" not in path \
            and "/runs/" not in path else page.wait_for_timeout(500)
        assert page.locator("h1").count() == 1, path
        unnamed = page.eval_on_selector_all(
            "button, input:not([type=hidden]), select, textarea",
            """els => els.filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                                && !(e.tagName === 'BUTTON' && e.textContent.trim())).map(e => e.outerHTML)""")
        assert not unnamed, (path, unnamed)
        if path == "/":
            page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
        if path == "/costs":
            # The repo task's two attempts each reported $0.0123.
            assert "task_id" not in world or "$0.0246" in page.locator("main").text_content()
            page.screenshot(path=str(SCREENSHOTS / "costs.png"), full_page=True)
    # The API docs: both load their scripts from this server and render the spec offline.
    page.goto("/docs")
    page.locator(".swagger-ui .info .title").get_by_text("Optio").wait_for(timeout=30_000)
    page.goto("/redoc")
    page.locator("redoc h1, [role=main] h1, h1").first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert "Optio" in page.content()
    # Without JavaScript the pages still read.
    plain = world["browser"].new_context(base_url=server.url, java_script_enabled=False)
    plain_page = plain.new_page()
    plain_page.goto("/login")
    plain_page.get_by_label("Username").fill("admin")
    plain_page.get_by_label("Password").fill(ADMIN_PASSWORD)
    plain_page.get_by_role("button", name="Sign in").click()
    assert plain_page.get_by_role("heading", name="Overview").is_visible()
    plain_page.goto("/tasks")
    assert plain_page.locator("table.tasks tbody tr").count() >= 1
    plain.close()
    watch.check()
    context.close()


def test_dark_mode_follows_the_os(world: dict[str, Any]) -> None:
    for scheme, background in (("dark", "rgb(18, 21, 27)"), ("light", "rgb(247, 248, 250)")):
        context, page, watch = signed_in(world, color_scheme=scheme)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        watch.check()
        context.close()
