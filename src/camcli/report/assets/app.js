// camcli report: the overview of every input and a detail view per input, from window.CAMCLI_DATA (data-*.js).
// Offline and static: no network request, every text goes in with textContent (never as HTML).
(function () {
  "use strict";
  var DATA = window.CAMCLI_DATA || { entries: [] };
  var PAGE = 120;
  var state = { q: "", method: "", status: "", sort: "name", page: 0, list: [], at: -1 };
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function img(src, alt, cls) {
    var i = el("img", cls);
    i.src = src; i.alt = alt; i.loading = "lazy";
    return i;
  }
  function best(e) { return e.top && e.top.length ? e.top[0] : null; }
  function matches(e) {
    if (state.status && e.status !== state.status) return false;
    if (state.method && !e.maps.some(function (m) { return m.method === state.method; })
        && !e.metrics.some(function (m) { return m.method === state.method; })) return false;
    if (!state.q) return true;
    var q = state.q.toLowerCase();
    if (e.input.toLowerCase().indexOf(q) >= 0) return true;
    return (e.top || []).concat(e.maps).some(function (c) {
      return String(c.name || c.class_name || "").toLowerCase().indexOf(q) >= 0;
    });
  }
  function prob(e) { var b = best(e); return b ? b.probability : -1; }
  function refresh() {
    var list = DATA.entries.filter(matches);
    if (state.sort === "name") list.sort(function (a, b) { return a.input < b.input ? -1 : a.input > b.input ? 1 : 0; });
    else if (state.sort === "prob-desc") list.sort(function (a, b) { return prob(b) - prob(a); });
    else list.sort(function (a, b) { return prob(a) - prob(b); });
    state.list = list;
    var pages = Math.max(1, Math.ceil(list.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    $("shown").textContent = list.length + " of " + DATA.entries.length + " shown";
    var cards = $("cards");
    cards.replaceChildren();
    list.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (e) { cards.appendChild(card(e)); });
    var pager = $("pager");
    pager.replaceChildren();
    if (pages > 1) {
      var prev = el("button", "", "← previous"), next = el("button", "", "next →");
      prev.disabled = state.page === 0; next.disabled = state.page >= pages - 1;
      prev.onclick = function () { state.page--; refresh(); };
      next.onclick = function () { state.page++; refresh(); };
      pager.append(prev, el("span", "hint", "page " + (state.page + 1) + " of " + pages), next);
    }
  }
  function card(e) {
    var c = el("button", "card" + (e.status === "error" ? " error" : ""));
    c.type = "button";
    c.dataset.input = e.input;
    if (e.thumb) c.appendChild(img(e.thumb, e.input));
    var meta = el("div", "meta");
    meta.appendChild(el("div", "name", e.input));
    var b = best(e);
    if (e.status === "error") meta.appendChild(el("div", "why", e.error || "failed"));
    else if (b) meta.appendChild(el("div", "cls", b.name + " · " + b.probability.toFixed(3)));
    c.appendChild(meta);
    c.onclick = function () { open(state.list.indexOf(e)); };
    return c;
  }
  function open(i) {
    if (i < 0 || i >= state.list.length) return;
    state.at = i;
    var e = state.list[i], d = $("detail");
    $("overview").hidden = true; d.hidden = false;
    d.replaceChildren();
    var back = el("button", "back", "← all images (Esc)");
    back.onclick = close;
    var title = el("h2", "", e.input);
    title.id = "detail-title";
    title.tabIndex = -1;
    d.append(back, title, el("p", "hint", (i + 1) + " of " + state.list.length + " · ←/→: previous/next image"));
    if (e.status === "error") { d.appendChild(el("div", "error-box", e.error || "failed")); return; }
    if (e.top && e.top.length) {
      var probs = el("div", "probs");
      e.top.forEach(function (t) {
        var row = el("div", "prob"), track = el("div", "track"), fill = el("div", "fill");
        fill.style.width = e.values ? "0%" : Math.max(0, Math.min(100, t.probability * 100)) + "%";
        if (e.values) track.title = "a value or a similarity, not a probability";
        else track.appendChild(fill);
        row.append(el("span", "", t.index + " " + t.name), track, el("span", "", t.probability.toFixed(3)));
        probs.appendChild(row);
      });
      d.appendChild(probs);
    }
    var maps = e.maps.filter(function (m) { return !state.method || m.method === state.method; });
    if (maps.length) {
      var own = maps.some(function (m) { return m.map && e.view; });
      var bar = el("div", "bar"), label = el("label", "", "map opacity "), slider = el("input");
      slider.type = "range"; slider.min = "0"; slider.max = "100"; slider.value = own ? "70" : "100"; slider.id = "opacity";
      label.appendChild(slider);
      bar.appendChild(label);
      if (!e.view) bar.appendChild(el("span", "hint", "(the original picture was not found when the report was built)"));
      else if (!own) bar.appendChild(el("span", "hint", "(fades the written overlay in; runs with --save-raw blend the map itself)"));
      d.appendChild(bar);
      var tiles = el("div", "tiles");
      if (e.view) {
        var t0 = el("div", "tile");
        t0.append(el("div", "title", "input"), img(e.view, e.input));
        tiles.appendChild(t0);
      }
      maps.forEach(function (m) {
        var t = el("div", "tile"), stack = el("div", "stack");
        t.appendChild(el("div", "title", m.method + (m.layer ? " @ " + m.layer : "") + " · " + m.class_index + " " + m.class_name + " · " + m.probability.toFixed(3)));
        if (e.view) stack.appendChild(img(e.view, e.input));
        // the map alone (saved with --save-raw) is blended here; otherwise the written overlay fades in
        var top = img(m.map && e.view ? m.map : m.overlay, m.method + " " + m.class_name, e.view ? "over" : "");
        if (m.map && e.view) top.style.opacity = String(slider.value / 100);
        stack.appendChild(top);
        t.appendChild(stack);
        tiles.appendChild(t);
      });
      d.appendChild(tiles);
      slider.oninput = function () {
        var v = String(slider.value / 100);
        d.querySelectorAll("img.over").forEach(function (o) { o.style.opacity = v; });
      };
    }
    if (e.grids.length) {
      d.appendChild(el("h2", "", "feature grids"));
      var g = el("div", "tiles");
      e.grids.forEach(function (f) {
        var t = el("div", "tile");
        t.append(el("div", "title", f.layer), img(f.grid, "features of " + f.layer));
        g.appendChild(t);
      });
      d.appendChild(g);
    }
    if (e.metrics.length) {
      d.appendChild(el("h2", "", "camcli evaluate"));
      // scores are [name, value] pairs, looked up in a Map: a name such as "__proto__" is just a name
      var keys = [], scores = e.metrics.map(function (m) { return new Map(m.scores || []); });
      scores.forEach(function (s) { s.forEach(function (v, k) { if (k.indexOf("@") < 0 && keys.indexOf(k) < 0) keys.push(k); }); });
      var table = el("table", "scores"), head = el("tr");
      ["map", "class"].concat(keys).forEach(function (k) { head.appendChild(el("th", "", k)); });
      table.appendChild(head);
      e.metrics.forEach(function (m, i) {
        var tr = el("tr");
        tr.appendChild(el("td", "", m.method));
        tr.appendChild(el("td", "", m.class_name));
        keys.forEach(function (k) { var v = scores[i].get(k); tr.appendChild(el("td", "", typeof v === "number" ? v.toFixed(3) : "—")); });
        table.appendChild(tr);
      });
      d.appendChild(table);
    }
    window.scrollTo(0, 0);
  }
  function close() { state.at = -1; $("detail").hidden = true; $("overview").hidden = false; }
  document.addEventListener("keydown", function (ev) {
    if (state.at < 0 || ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    if (ev.key === "ArrowRight") { ev.preventDefault(); open(state.at + 1); }
    else if (ev.key === "ArrowLeft") { ev.preventDefault(); open(state.at - 1); }
    else if (ev.key === "Escape") close();
  });
  $("q").oninput = function () { state.q = this.value; state.page = 0; refresh(); };
  $("method").onchange = function () { state.method = this.value; state.page = 0; refresh(); };
  $("status").onchange = function () { state.status = this.value; state.page = 0; refresh(); };
  $("sort").onchange = function () { state.sort = this.value; refresh(); };
  refresh();
})();
