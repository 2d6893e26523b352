// Optio dashboard: times in the viewer's timezone, live regions over the workspace event stream, the live log
// viewer, and form posts when authentication is off. Pages work without it; this only makes them live.
(function () {
  "use strict";
  const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      if (el.dataset.local) continue;
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) continue;
      el.title = el.textContent;
      el.textContent = fmt.format(d);
      el.dataset.local = "1";
    }
  }

  // With OPTIO_AUTH=disabled the server wants a custom header on every write (a cross-site form cannot send one).
  function authDisabledForms() {
    if (!document.body.dataset.authDisabled) return;
    document.addEventListener("submit", async (ev) => {
      const form = ev.target;
      if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") return;
      ev.preventDefault();
      const res = await fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)),
                                             headers: { "X-Optio-CSRF": "1" } });
      if (res.redirected) { location.href = res.url; return; }
      document.open(); document.write(await res.text()); document.close();
    });
  }

  // Live regions: `data-live-part` names the page block to re-render, `data-live-on` which runs change it
  // ("*": any; "repo_task:5": that run).
  const pending = new Map();
  function refresh(el) {
    if (pending.has(el)) return;
    pending.set(el, setTimeout(() => {
      pending.delete(el);
      const url = new URL(location.href);
      url.searchParams.set("part", el.dataset.livePart);
      htmx.ajax("GET", url.pathname + url.search, { target: el, swap: "innerHTML" }).then(() => localTimes(el));
    }, 250));
  }
  function onRunChange(kind, runId, what) {
    for (const el of document.querySelectorAll("[data-live-part]")) {
      const on = el.dataset.liveOn;
      if (on === `${kind}:${runId}` || (on === "*" && what !== "log")) refresh(el);
    }
  }
  function liveStream() {
    const after = document.body.dataset.eventsAfter;
    if (after === "" || after === undefined || !document.querySelector("[data-live-part]")) return;
    const status = document.getElementById("live-status");
    // The page's own workspace, named explicitly: EventSource cannot send X-Optio-Workspace.
    const ws = document.body.dataset.workspace;
    const es = new EventSource("/api/events/stream?after=" + encodeURIComponent(after) +
                               (ws ? "&workspace=" + encodeURIComponent(ws) : ""));
    es.addEventListener("open", () => { if (status) { status.textContent = "live"; status.classList.add("on"); } });
    es.addEventListener("error", () => { if (status) { status.textContent = "reconnecting"; status.classList.remove("on"); } });
    for (const type of ["state", "event", "cost"]) {
      es.addEventListener(type, (ev) => { const d = JSON.parse(ev.data); onRunChange(d.kind, d.run_id, type); });
    }
    window.addEventListener("pagehide", () => es.close());
  }

  // The log viewer: follows a run's log stream, resumes after the last sequence number it rendered when the
  // connection drops (so no line is shown twice or skipped), and renders in batches per animation frame into
  // chunks the browser can skip laying out while off screen, so tens of thousands of lines stay smooth.
  const CHUNK = 500, PER_FRAME = 2500;
  function logViewer(box) {
    const base = box.dataset.logUrl;
    const follow = document.getElementById("log-follow");
    const counter = document.getElementById("log-count");
    const tools = new Map();
    let lastSeq = 0, count = 0, chunk = null, queue = [], scheduled = false, source = null, finished = false;
    let attempt = null;
    let reconnects = 0;

    function el(tag, cls, text) {
      const e = document.createElement(tag);
      if (cls) e.className = cls;
      if (text !== undefined) e.textContent = text;
      return e;
    }
    function render(line) {
      if (line.stream === "raw") return null;
      if (line.stream !== "event") return el("div", "l " + line.stream, line.text);
      let ev;
      try { ev = JSON.parse(line.text); } catch (e) { return el("div", "l", line.text); }
      switch (ev.type) {
        case "text": return el("div", "l text", ev.text || "");
        case "thinking": {
          const d = el("details", "thinking"); d.append(el("summary", "", "thinking…"), el("pre", "", ev.text || ""));
          return d;
        }
        case "tool_use": {
          const d = el("details", "tool"); d.append(el("summary", "", "→ " + (ev.name || "tool")), el("pre", "", ev.input_summary || ""));
          if (ev.tool_id) tools.set(ev.tool_id, d);
          return d;
        }
        case "tool_result": {
          const pre = el("pre", ev.is_error ? "err" : "", (ev.is_error ? "✗ " : "← ") + (ev.output || ""));
          const owner = ev.tool_id && tools.get(ev.tool_id);
          if (owner) { owner.append(pre); if (ev.is_error) owner.querySelector("summary").classList.add("err"); return el("span"); }
          const d = el("details", "tool"); d.append(el("summary", ev.is_error ? "err" : "", "tool result"), pre);
          return d;
        }
        case "error": return el("div", "l err", "! " + (ev.kind || "error") + ": " + (ev.message || ""));
        case "usage": {
          const cost = ev.cost_usd == null ? "" : `, $${Number(ev.cost_usd).toFixed(4)}${ev.cost_imputed ? " (imputed)" : ""}`;
          return el("div", "l usage", `· tokens in ${ev.input_tokens || 0} / out ${ev.output_tokens || 0}${cost}`);
        }
        case "session": return el("div", "l session", "· session " + (ev.session_id || ""));
        case "result": return el("div", "l result", (ev.success ? "✓ " : "✗ ") + (ev.summary || ""));
        default: return el("div", "l", line.text);
      }
    }
    function flush() {
      scheduled = false;
      const batch = queue.splice(0, PER_FRAME);
      const frag = document.createDocumentFragment();
      for (const line of batch) {
        if (!chunk || chunk.childElementCount >= CHUNK) { chunk = el("div", "log-chunk"); frag.append(chunk); }
        if (line.attempt !== attempt) {
          if (attempt !== null) chunk.append(el("div", "attempt", `— attempt ${line.attempt} —`));
          attempt = line.attempt;
        }
        const node = render(line);
        if (!node) continue;
        node.dataset.seq = line.seq;
        chunk.append(node);
        count++;
      }
      box.append(frag);
      counter.textContent = count + " lines" + (finished && !queue.length ? " · finished" : "");
      if (follow && follow.checked) box.scrollTop = box.scrollHeight;
      if (queue.length) schedule();
    }
    function schedule() { if (!scheduled) { scheduled = true; requestAnimationFrame(flush); } }
    function connect() {
      source = new EventSource(`${base}/stream?after=${lastSeq}`);
      source.addEventListener("line", (ev) => {
        const line = JSON.parse(ev.data);
        if (line.seq <= lastSeq) return;  // already shown (a replay after a reconnect)
        lastSeq = line.seq;
        queue.push(line);
        schedule();
      });
      source.addEventListener("end", () => { finished = true; source.close(); box.dataset.finished = "true"; schedule(); });
      source.addEventListener("error", () => {
        // Reconnect ourselves, from the last line rendered (the browser's own retry would replay from the start).
        source.close();
        if (finished) return;
        reconnects++;
        box.dataset.reconnects = String(reconnects);
        setTimeout(connect, 500);
      });
    }
    // Scrolling up to read stops following the tail; scrolling back to the bottom resumes it.
    box.addEventListener("scroll", () => {
      if (follow) follow.checked = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    }, { passive: true });
    box.optioLog = { get lastSeq() { return lastSeq; }, get count() { return count; } };
    connect();
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    authDisabledForms();
    liveStream();
    const box = document.getElementById("log");
    if (box) logViewer(box);
  });
})();
