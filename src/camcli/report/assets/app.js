// camcli report: a small single-page app over window.CAMCLI_DATA (data-*.js), opened from disk (file://) or served.
// Every view has its own address in the hash, so Back/Forward and a copied address work:
//   #/                  the overview (cards), #/image/<id>   one input, #/evaluate   evaluate's summary,
//   each with the filters as a query: #/image/coffee.png?method=gradcam&status=ok
// Offline and static: no network request, every text goes in with textContent (never as HTML).
(function () {
  "use strict";
  var DATA = window.CAMCLI_DATA || { entries: [], methods: [], baselines: [], evaluate: null };
  var PAGE = 120;
  var DEFAULTS = { q: "", method: "", cls: "", status: "", kind: "", sort: "name", show: "overlays", page: "1" };
  var STATUSES = { ok: "ok", no_detection: "no detection", no_match: "no match", empty_mask: "empty mask",
                   no_label: "no label", error: "failed" };
  var KINDS = { cam: "CAM", video: "videos", volume: "volumes", objects: "objects", features: "feature grids", evaluate: "evaluate" };
  var BY_ID = new Map(DATA.entries.map(function (e) { return [e.id, e]; }));
  // what each score means, in a Map: a score named "constructor" is not a property of every object
  var SCORES = new Map(Object.entries(DATA.evaluate ? DATA.evaluate.scores : {}));
  var current = { view: "", params: DEFAULTS, list: [], at: -1, gridScroll: 0 };

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
  function option(select, value, text) {
    var o = el("option", "", text);
    o.value = value;
    select.appendChild(o);
  }

  // ------------------------------------------------------------------------------------------------ addresses
  function parse(hash) {
    var text = hash.replace(/^#/, ""), cut = text.indexOf("?");
    var path = cut < 0 ? text : text.slice(0, cut), query = new URLSearchParams(cut < 0 ? "" : text.slice(cut + 1));
    var params = Object.assign({}, DEFAULTS);
    Object.keys(DEFAULTS).forEach(function (k) { if (query.has(k)) params[k] = query.get(k); });
    if (path.indexOf("/image/") === 0) return { view: "image", id: path.slice(7), params: params };
    if (path === "/evaluate") return { view: "evaluate", id: null, params: params };
    return { view: "grid", id: null, params: params };
  }
  function address(view, id, params) {
    var query = new URLSearchParams();
    Object.keys(DEFAULTS).forEach(function (k) { if (params[k] !== DEFAULTS[k]) query.set(k, params[k]); });
    var q = query.toString();
    var path = view === "image" ? "/image/" + id : view === "evaluate" ? "/evaluate" : "/";
    return "#" + path + (q ? "?" + q : "");
  }
  // a new view is a new history entry (Back returns to it); a filter or a step to the next image replaces it.
  // The view is drawn at once (hashchange comes later, and then finds it drawn).
  function go(view, id, params, replace) { navigate(address(view, id, params), replace); }
  function navigate(hash, replace) {
    if (hash !== location.hash) {
      if (replace) location.replace(hash);
      else location.hash = hash;
    }
    render();
  }
  function withParam(key, value) {
    var p = Object.assign({}, current.params);
    p[key] = value;
    if (key !== "page") p.page = "1";
    return p;
  }

  // -------------------------------------------------------------------------------------------------- filters
  function className(c) { return (c.class_index !== null && c.class_index !== undefined ? c.class_index + " " : "") + (c.class_name || "unknown class"); }
  function classesOf(e) {
    var names = (e.top || []).slice(0, 1).map(function (t) { return t.name; });
    e.maps.concat(e.metrics).forEach(function (m) { if (m.class_name && names.indexOf(m.class_name) < 0) names.push(m.class_name); });
    return names;
  }
  // what a card says of its input: the top class, else the first map's or measured class
  function headline(e) {
    if (e.top && e.top.length) return { name: e.top[0].name, probability: e.top[0].probability };
    var first = e.maps[0] || e.metrics.filter(function (m) { return !m.baseline; })[0];
    return first ? { name: first.class_name || "unknown class", probability: first.probability } : null;
  }
  function probability(e) { var h = headline(e); return h ? h.probability : -1; }
  function byMethod(m, p) { return !p.method || m.method === p.method || m.baseline; }
  function byClass(m, p) { return !p.cls || m.class_name === p.cls; }
  function matches(e, p) {
    if (p.status && e.statuses.indexOf(p.status) < 0) return false;
    if (p.kind && e.kinds.indexOf(p.kind) < 0) return false;
    if (p.method && !e.maps.concat(e.metrics).some(function (m) { return m.method === p.method; })) return false;
    if (p.cls && classesOf(e).indexOf(p.cls) < 0) return false;
    if (!p.q) return true;
    var q = p.q.toLowerCase();
    return e.input.toLowerCase().indexOf(q) >= 0 || classesOf(e).some(function (c) { return c.toLowerCase().indexOf(q) >= 0; })
      || (e.top || []).some(function (t) { return String(t.name).toLowerCase().indexOf(q) >= 0; });
  }
  function listFor(p) {
    var list = DATA.entries.filter(function (e) { return matches(e, p); });
    if (p.sort === "prob-desc") list.sort(function (a, b) { return probability(b) - probability(a); });
    else if (p.sort === "prob-asc") list.sort(function (a, b) { return probability(a) - probability(b); });
    return list;  // (the data comes sorted by name)
  }

  // ------------------------------------------------------------------------------------------------- controls
  function setUpControls() {
    DATA.methods.forEach(function (m) { option($("method"), m, m); });
    var counts = new Map();
    DATA.entries.forEach(function (e) { classesOf(e).forEach(function (c) { counts.set(c, (counts.get(c) || 0) + 1); }); });
    Array.from(counts.keys()).sort().forEach(function (c) { option($("cls"), c, c + " (" + counts.get(c) + ")"); });
    var has = function (key, value) { return DATA.entries.some(function (e) { return e[key].indexOf(value) >= 0; }); };
    Object.keys(STATUSES).forEach(function (s) {
      if (s === "ok" || s === "error" || has("statuses", s)) option($("status"), s, STATUSES[s]);
    });
    Object.keys(KINDS).forEach(function (k) { if (has("kinds", k)) option($("kind"), k, KINDS[k]); });
    $("views").hidden = !DATA.evaluate;  // (one view of images: the title leads to it)
    ["method", "cls", "status", "kind", "sort", "show"].forEach(function (key) {
      $(key).onchange = function () { go("grid", null, withParam(key, this.value), current.view === "grid"); };
    });
    $("q").oninput = function () { go("grid", null, withParam("q", this.value), current.view === "grid"); };
  }
  function syncControls(p) {
    ["method", "cls", "status", "kind", "sort", "show"].forEach(function (key) {
      var s = $(key);
      if (!Array.prototype.some.call(s.options, function (o) { return o.value === p[key]; })) option(s, p[key], p[key]);
      s.value = p[key];
    });
    if ($("q").value !== p.q) $("q").value = p.q;
    $("to-grid").href = address("grid", null, p);
    $("to-evaluate").href = address("evaluate", null, p);
    $("home").href = address("grid", null, DEFAULTS);
  }

  // ------------------------------------------------------------------------------------------------- overview
  function showGrid(p) {
    var list = current.list, pages = Math.max(1, Math.ceil(list.length / PAGE));
    var page = Math.min(Math.max(0, (parseInt(p.page, 10) || 1) - 1), pages - 1);  // (the address counts from 1)
    $("shown").textContent = list.length + " of " + DATA.entries.length + " shown";
    var cards = $("cards");
    cards.replaceChildren();
    list.slice(page * PAGE, (page + 1) * PAGE).forEach(function (e) { cards.appendChild(card(e, p)); });
    if (!list.length) cards.appendChild(el("p", "hint", "No input matches these filters."));
    var pager = $("pager");
    pager.replaceChildren();
    if (pages > 1) {
      var prev = el("button", "", "← previous"), next = el("button", "", "next →");
      prev.disabled = page === 0; next.disabled = page >= pages - 1;
      prev.onclick = function () { go("grid", null, withParam("page", String(page)), false); };
      next.onclick = function () { go("grid", null, withParam("page", String(page + 2)), false); };
      pager.append(prev, el("span", "hint", "page " + (page + 1) + " of " + pages), next);
    }
  }
  function card(e, p) {
    var c = el("a", "card status-" + e.status);
    c.href = address("image", e.id, p);
    c.dataset.input = e.input;
    // the first overlay (or the input, with "cards: inputs"); the other one on hover
    var pics = p.show === "inputs" ? [e.thumb, e.card] : [e.card || e.thumb, e.thumb];
    var box = el("div", "pics");
    if (pics[0]) box.appendChild(img(pics[0], e.input, "main"));
    if (pics[1] && pics[1] !== pics[0]) { box.appendChild(img(pics[1], e.input, "alt")); box.classList.add("two"); }
    c.appendChild(box);
    var meta = el("div", "meta");
    meta.appendChild(el("div", "name", e.input));
    var h = headline(e), objects = e.maps.filter(function (m) { return m.object; }).length;
    if (e.status === "error") meta.appendChild(el("div", "why", e.error || "failed"));
    else if (h) meta.appendChild(el("div", "cls", h.name + " · " + h.probability.toFixed(3) + (objects > 1 ? " · " + objects + " objects" : "")));
    if (e.status !== "ok" && e.status !== "error") meta.appendChild(el("div", "note", e.notes.join("; ") || STATUSES[e.status]));
    c.appendChild(meta);
    return c;
  }

  // --------------------------------------------------------------------------------------------------- detail
  function mapTitle(m) {
    var parts = [m.method + (m.layer ? " @ " + m.layer : "")];
    if (m.object) {  // two objects of one class: their number and box tell them apart
      if (m.object.number !== null) parts.push("object " + m.object.number);
      parts.push(className(m));
      if (m.object.box) parts.push("box " + m.object.box.map(function (v) { return Math.round(v); }).join(","));
      if (m.object.box) parts.push("score " + m.probability.toFixed(3));
      if (m.object.pixels !== null) parts.push(m.object.pixels + " pixels");
    } else {
      parts.push(className(m), m.probability.toFixed(3));
    }
    return parts.join(" · ");
  }
  function zoomable(picture, src, title) {
    picture.classList.add("zoomable");
    picture.title = "click: full size";
    picture.tabIndex = 0;
    picture.addEventListener("click", function () { openLightbox(src, title); });
    picture.addEventListener("keydown", function (ev) { if (ev.key === "Enter") openLightbox(src, title); });
    return picture;
  }
  function showDetail(e, p) {
    var d = $("detail"), i = current.list.indexOf(e);
    d.replaceChildren();
    var back = el("a", "back", "← all images (Esc)");
    back.href = address("grid", null, p);
    var title = el("h2", "", e.input);
    title.id = "detail-title";
    title.tabIndex = -1;
    var where = i >= 0 ? (i + 1) + " of " + current.list.length + " · ←/→: previous/next image" : "not among the filtered images";
    d.append(back, title, el("p", "hint", where + " · click a picture to see it at full size"));
    if (e.status === "error") d.appendChild(el("div", "error-box", e.error || "failed"));
    if (e.notes.length) {
      var box = el("div", "note-box");
      box.append(el("strong", "", "not drawn: "), el("span", "", e.notes.join("; ")));
      d.appendChild(box);
    }
    if (e.top && e.top.length) d.appendChild(probabilities(e));
    var maps = e.maps.filter(function (m) { return byMethod(m, p) && byClass(m, p); });
    if (maps.length || (e.view && !e.metrics.length && !e.grids.length)) showMaps(d, e, maps);
    if (e.grids.length) {
      d.appendChild(el("h2", "", "feature grids"));
      var g = el("div", "tiles");
      e.grids.forEach(function (f) {
        var t = el("div", "tile");
        t.append(el("div", "title", f.layer), zoomable(img(f.grid, "features of " + f.layer), f.grid, "features of " + f.layer));
        g.appendChild(t);
      });
      d.appendChild(g);
    }
    var metrics = e.metrics.filter(function (m) { return byMethod(m, p) && byClass(m, p); });
    if (metrics.length) showMetrics(d, e, metrics, p);
    title.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  function probabilities(e) {
    var probs = el("div", "probs");
    e.top.forEach(function (t) {
      var row = el("div", "prob"), track = el("div", "track"), fill = el("div", "fill");
      fill.style.width = Math.max(0, Math.min(100, t.probability * 100)) + "%";
      if (e.values) track.title = "a value or a similarity, not a probability";
      else track.appendChild(fill);
      row.append(el("span", "", className({ class_index: t.index, class_name: t.name })), track, el("span", "", t.probability.toFixed(3)));
      probs.appendChild(row);
    });
    return probs;
  }
  function showMaps(d, e, maps) {
    var own = maps.some(function (m) { return m.map && e.view; });
    var bar = el("div", "bar"), label = el("label", "", "map opacity "), slider = el("input");
    slider.type = "range"; slider.min = "0"; slider.max = "100"; slider.value = own ? "70" : "100"; slider.id = "opacity";
    label.appendChild(slider);
    bar.appendChild(label);
    if (!e.view) bar.appendChild(el("span", "hint", "(the original picture was not found when the report was built)"));
    else if (!own) bar.appendChild(el("span", "hint", "(fades the written overlay in; runs with --save-raw blend the map itself)"));
    if (maps.some(function (m) { return !m.media; })) d.appendChild(bar);  // (a video's or volume's map: its own tile)
    var tiles = el("div", "tiles");
    if (e.view) {
      var t0 = el("div", "tile");
      var what = "input" + (e.view_note ? " · " + e.view_note : "");  // a video's first frame, a volume's middle slice
      t0.append(el("div", "title", what), zoomable(img(e.view, e.input), e.view, what + " · " + e.input));
      tiles.appendChild(t0);
    }
    maps.forEach(function (m) {
      if (m.media) { tiles.appendChild(window.CAMCLI_MEDIA.tile({ el: el, img: img, zoomable: zoomable }, m, mapTitle(m))); return; }
      var t = el("div", "tile"), stack = el("div", "stack"), name = mapTitle(m);
      t.appendChild(el("div", "title", name));
      if (e.view) stack.appendChild(img(e.view, e.input));
      // the map alone (saved with --save-raw) is blended here; otherwise the written overlay fades in
      var top = img(m.map && e.view ? m.map : m.overlay, name, e.view ? "over" : "");
      if (m.map && e.view) top.style.opacity = String(slider.value / 100);
      stack.appendChild(top);
      t.appendChild(zoomable(stack, m.overlay, name));  // full size: the overlay as the run wrote it
      tiles.appendChild(t);
    });
    d.appendChild(tiles);
    slider.oninput = function () {
      var v = String(slider.value / 100);
      d.querySelectorAll("img.over").forEach(function (o) { o.style.opacity = v; });
    };
  }
  function scoreHead(key) {  // "deletion AUC ↓", with what it measures on hover
    var s = SCORES.get(key);
    var th = el("th", "", s ? s.label + " " + s.arrow : key);
    if (s) th.title = s.help + " (" + s.better + " is better)";
    return th;
  }
  function legend(keys) {
    var dl = el("dl", "legend");
    keys.forEach(function (k) {
      var s = SCORES.get(k);
      if (!s) return;
      dl.append(el("dt", "", s.label + " " + s.arrow), el("dd", "", s.help + "; " + s.better + " is better."));
    });
    return dl;
  }
  function showMetrics(d, e, metrics, p) {
    d.appendChild(el("h2", "", "camcli evaluate: the maps measured"));
    var drawn = metrics.filter(function (m) { return m.overlay; });  // --annotations: the ground truth over each map
    if (drawn.length) {
      d.appendChild(el("p", "hint", "White: the annotated object; the ring: the map's maximum (the pointing game's point)."));
      var tiles = el("div", "tiles");
      drawn.forEach(function (m) {
        var s = new Map(m.scores || []), hit = s.get("pointing"), name = m.method + " · " + className(m);
        if (typeof hit === "number") name += hit ? " · points at it" : " · misses it";
        var t = el("div", "tile");
        t.append(el("div", "title", name), zoomable(img(m.overlay, name), m.overlay, name));
        tiles.appendChild(t);
      });
      d.appendChild(tiles);
    }
    // scores are [name, value] pairs, looked up in a Map: a name such as "__proto__" is just a name
    var keys = [], scores = metrics.map(function (m) { return new Map(m.scores || []); });
    scores.forEach(function (s) { s.forEach(function (v, k) { if (k.indexOf("@") < 0 && keys.indexOf(k) < 0) keys.push(k); }); });
    var table = el("table", "scores"), head = el("tr");
    head.append(el("th", "", "map"), el("th", "", "class"));
    keys.forEach(function (k) { head.appendChild(scoreHead(k)); });
    table.appendChild(head);
    metrics.forEach(function (m, i) {
      var tr = el("tr", m.baseline ? "baseline" : "");
      tr.append(el("td", "", m.method + (m.baseline ? " (baseline)" : "")), el("td", "", className(m) + " · " + m.probability.toFixed(3)));
      keys.forEach(function (k) { var v = scores[i].get(k); tr.appendChild(el("td", "", typeof v === "number" ? v.toFixed(3) : "—")); });
      table.appendChild(tr);
    });
    d.appendChild(table);
    d.appendChild(el("p", "hint", "Baselines are maps that explain nothing (noise, a centred blob, the image's edges): a method should beat them."));
    d.appendChild(legend(keys));
    if (DATA.evaluate) {
      var link = el("a", "", "the summary over every image, and the plots →");
      link.href = address("evaluate", null, p);
      d.appendChild(link);
    }
  }

  // ------------------------------------------------------------------------------------------------- evaluate
  function showEvaluate(p) {
    var v = $("evaluate"), ev = DATA.evaluate;
    v.replaceChildren();
    var back = el("a", "back", "← all images (Esc)");
    back.href = address("grid", null, p);
    var title = el("h2", "", "camcli evaluate: how faithful each method's map is");
    title.tabIndex = -1;
    v.append(back, title);
    if (!ev) { v.appendChild(el("p", "hint", "This folder has no records of camcli evaluate.")); return; }
    v.appendChild(el("p", "hint", "Mean ± 95 % interval over the (image, class) pairs measured. ↓: lower is better, ↑: higher is better; "
      + "the best method of each column in bold. Rank: the mean of each map's rank on the scores (1 = best), the order of the rows. "
      + "Baselines (" + (DATA.baselines.join(", ") || "none") + ") are maps that explain nothing, ranked with the methods: a method below them explains less than nothing would."));
    ev.runs.forEach(function (run) {
      v.appendChild(el("h3", "", run.title + " · " + run.images + " image(s)"));
      var table = el("table", "scores summary"), head = el("tr");
      head.append(el("th", "", "map"), el("th", "", "n"));
      run.keys.forEach(function (k) { head.appendChild(scoreHead(k)); });
      head.appendChild(el("th", "", "rank ↓"));
      table.appendChild(head);
      var rows = run.rows.filter(function (r) { return byMethod(r, p); });
      var best = run.keys.map(function (k, j) {
        var lower = SCORES.get(k).better === "lower", found = null;
        rows.forEach(function (r) { var c = r.cells[j]; if (!r.baseline && c && (found === null || (lower ? c[0] < found : c[0] > found))) found = c[0]; });
        return found;
      });
      rows.forEach(function (r) {
        var tr = el("tr", r.baseline ? "baseline" : "");
        tr.append(el("td", "", r.method + (r.baseline ? " (baseline)" : "")), el("td", "", r.n));
        r.cells.forEach(function (c, j) {
          var td = el("td", c && !r.baseline && c[0] === best[j] ? "best" : "", c ? c[0].toFixed(3) + (c[1] === null ? "" : " ± " + c[1].toFixed(3)) + (c[2] < r.n ? " (n=" + c[2] + ")" : "") : "—");
          tr.appendChild(td);
        });
        tr.appendChild(el("td", "", r.rank === null || r.rank === undefined ? "—" : r.rank.toFixed(1)));
        table.appendChild(tr);
      });
      v.appendChild(table);
      if (run.sanity) {
        v.appendChild(el("h3", "", "sanity check: rank correlation with the trained model's map as the weights are randomised"));
        var st = el("table", "scores"), sh = el("tr");
        run.sanity.columns.forEach(function (c) { sh.appendChild(el("th", "", c)); });
        st.appendChild(sh);
        run.sanity.rows.forEach(function (row) {
          var tr = el("tr");
          row.forEach(function (c) { tr.appendChild(el("td", "", c)); });
          st.appendChild(tr);
        });
        v.appendChild(st);
      }
      v.appendChild(legend(run.keys));
    });
    if (ev.plots.length) {
      v.appendChild(el("h3", "", "plots"));
      var tiles = el("div", "tiles wide");
      ev.plots.forEach(function (plot) {
        var t = el("div", "tile");
        t.append(el("div", "title", plot.name), zoomable(img(plot.src, plot.name), plot.src, plot.name));
        tiles.appendChild(t);
      });
      v.appendChild(tiles);
    }
    title.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------------------------------------------- lightbox
  var before = null;  // what had the focus before the lightbox opened
  function openLightbox(src, title) {
    before = document.activeElement;
    $("lb-title").textContent = title;
    var picture = el("img");  // at its natural size: the box scrolls
    picture.id = "lb-img"; picture.src = src; picture.alt = title;
    $("lb-scroll").replaceChildren(picture);
    $("lightbox").classList.remove("fit");
    $("lb-fit").textContent = "fit to window";
    $("lightbox").hidden = false;
    $("lb-scroll").scrollTo(0, 0);
    $("lb-close").focus();
  }
  function closeLightbox() {
    $("lightbox").hidden = true;
    $("lb-scroll").replaceChildren();
    if (before && before.focus) before.focus({ preventScroll: true });
  }
  $("lb-close").onclick = closeLightbox;
  $("lb-fit").onclick = function () {
    var fit = $("lightbox").classList.toggle("fit");
    this.textContent = fit ? "full size" : "fit to window";
  };
  $("lb-scroll").onclick = function (ev) { if (ev.target === this) closeLightbox(); };

  // --------------------------------------------------------------------------------------------------- render
  var drawn = null;  // the address the page shows
  function render() {
    if (drawn === location.hash) return;
    drawn = location.hash;
    var r = parse(location.hash), p = r.params, from = current.view, page = current.params.page;
    if (from === "grid" && r.view !== "grid") current.gridScroll = window.scrollY;
    if (!$("lightbox").hidden) closeLightbox();
    var e = r.view === "image" ? BY_ID.get(r.id) : null;
    if (r.view === "image" && !e) r = { view: "grid", params: p };  // an address of an input not in this report
    current.view = r.view; current.params = p; current.list = listFor(p);
    current.at = e ? current.list.indexOf(e) : -1;
    syncControls(p);
    $("overview").hidden = r.view !== "grid";
    $("detail").hidden = r.view !== "image";
    $("evaluate").hidden = r.view !== "evaluate";
    document.body.dataset.view = r.view;
    if (r.view === "image") showDetail(e, p);
    else if (r.view === "evaluate") showEvaluate(p);
    else {
      showGrid(p);
      if (from && from !== "grid") window.scrollTo(0, current.gridScroll);  // back where the card was
      else if (p.page !== page) window.scrollTo(0, 0);
    }
  }
  document.addEventListener("keydown", function (ev) {
    if (!$("lightbox").hidden) { if (ev.key === "Escape") { ev.preventDefault(); closeLightbox(); } return; }
    var tag = ev.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var p = current.params;
    if (current.view === "image") {
      var step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
      var next = current.list[current.at + step];
      if (step && current.at >= 0 && next) {  // (and the page of the overview that shows it, for Esc)
        ev.preventDefault();
        go("image", next.id, Object.assign({}, p, { page: String(Math.floor((current.at + step) / PAGE) + 1) }), true);
      }
      else if (ev.key === "Escape") go("grid", null, p, false);
    } else if (current.view === "evaluate" && ev.key === "Escape") go("grid", null, p, false);
  });
  window.addEventListener("hashchange", render);  // Back, Forward, an address typed or pasted
  document.addEventListener("click", function (ev) {  // the page's own links (a card, "all images") draw at once
    var a = ev.target.closest && ev.target.closest("a[href^='#']");
    if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    navigate(a.getAttribute("href"), false);
  });
  setUpControls();
  render();
})();
