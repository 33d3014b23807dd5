// camcli report: the tile of a video's or a volume's map (a record with "media", camcli.report.media), for app.js.
//   a video:  the overlay video playing (<video controls muted loop playsinline>, a relative link: it plays from
//             file://), what was explained in words, and the contact sheet (click: full size);
//   a volume: the montage (click: full size), the scan's shape and intensity scaling in words, and a link to the
//             map aligned on the scan (NIfTI), to open over the scan in 3D Slicer or ITK-SNAP.
// Every text goes in with textContent (never as HTML).
(function () {
  "use strict";
  // tools: app.js's el(tag, cls, text), img(src, alt, cls), zoomable(picture, src, title)
  function link(tools, href, text) {
    var a = tools.el("a", "file-link", text);
    a.href = href;  // a file of the report's folder (opened by the browser, or downloaded)
    return a;
  }
  function words(tools, lines) {
    var list = tools.el("ul", "media-words");
    lines.forEach(function (line) { list.appendChild(tools.el("li", "", line)); });
    return list;
  }
  function videoTile(tools, t, m, name) {
    var video = tools.el("video", "media-video");
    video.controls = true; video.muted = true; video.loop = true; video.playsInline = true;
    video.setAttribute("muted", ""); video.setAttribute("playsinline", "");  // (also as attributes: Safari reads them)
    video.preload = "metadata";
    video.src = m.overlay;
    video.title = name;
    var fallback = tools.el("p", "hint", "this browser cannot play this video; open it with a video player, or see the contact sheet below");
    fallback.hidden = true;
    video.addEventListener("error", function () { fallback.hidden = false; });
    t.append(video, fallback, words(tools, m.media.lines));
    var links = tools.el("p", "media-links");
    links.appendChild(link(tools, m.overlay, "the overlay video"));
    t.appendChild(links);
    if (m.media.sheet) {
      t.appendChild(tools.el("div", "subtitle", "contact sheet"));
      t.appendChild(tools.zoomable(tools.img(m.media.sheet, "contact sheet · " + name, "sheet"), m.media.sheet, "contact sheet · " + name));
    }
  }
  function volumeTile(tools, t, m, name) {
    t.appendChild(words(tools, m.media.lines));
    var links = tools.el("p", "media-links");
    if (m.media.map) links.appendChild(link(tools, m.media.map, m.media.map_text));
    else links.appendChild(tools.el("span", "hint", "(the map file was not found when the report was built)"));
    t.append(links, tools.zoomable(tools.img(m.overlay, name, "montage"), m.overlay, name));
  }
  window.CAMCLI_MEDIA = {
    tile: function (tools, m, name) {
      var t = tools.el("div", "tile media-tile " + m.media.kind);
      t.appendChild(tools.el("div", "title", name));
      if (m.media.kind === "video") videoTile(tools, t, m, name);
      else volumeTile(tools, t, m, name);
      return t;
    }
  };
})();
