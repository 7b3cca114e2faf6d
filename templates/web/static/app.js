/* kiemdiem dashboard: live refresh, the unit tree (expand, collapse, search, filters), uploads.
   Plain JavaScript, no build step. Every page works without it; this only makes it quicker. */
(function () {
  "use strict";

  var body = document.body;
  var csrf = body.getAttribute("data-csrf") || "";
  var every = Math.max(1, parseInt(body.getAttribute("data-refresh") || "15", 10)) * 1000;

  /* Same folding as kiemdiem.web.queries.fold: lower case, no Vietnamese diacritics. */
  function fold(text) {
    return (text || "").toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d");
  }

  function poll(url, onData, kind) {
    var etag = null;
    function tick() {
      if (document.hidden) { return; }
      var headers = { "X-Live": "1" };
      if (etag) { headers["If-None-Match"] = etag; }
      fetch(url(), { headers: headers, credentials: "same-origin", cache: "no-store" }).then(function (r) {
        if (r.status === 401) { window.location.reload(); return; }
        if (r.status !== 200) { return; }
        etag = r.headers.get("ETag");
        return (kind === "json" ? r.json() : r.text()).then(onData);
      }).catch(function () { /* offline for a moment: try again at the next tick */ });
    }
    window.setInterval(tick, every);
  }

  /* 1. Live fragments: <div data-live="url"> is replaced by the server's fragment. */
  Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), function (el) {
    poll(function () { return el.getAttribute("data-live"); }, function (html) {
      if (el.innerHTML !== html) { el.innerHTML = html; }
    }, "text");
  });

  /* 2. The unit tree: a flat list in path order, each row with its depth. */
  var tree = document.getElementById("tree");
  if (tree) {
    var rows = Array.prototype.slice.call(tree.children);
    var byCode = {};
    var depth = [], names = [];
    rows.forEach(function (li, i) {
      depth[i] = parseInt(li.getAttribute("data-d"), 10);
      var link = li.querySelector("a");
      names[i] = fold((link ? link.textContent : "") + " " + li.getAttribute("data-c"));
      byCode[li.getAttribute("data-c")] = li;
    });
    var form = document.getElementById("tree-filter");
    var q = document.getElementById("q"), state = document.getElementById("state"), kind = document.getElementById("kind");
    var count = document.getElementById("tree-count"), empty = document.getElementById("tree-empty");
    var serverFiltered = tree.getAttribute("data-filtered") === "1";

    var setExpanded = function (li, open) {
      var b = li.querySelector("button.t");
      if (b) { b.setAttribute("aria-expanded", open ? "true" : "false"); }
    };
    var isCollapsed = function (li) {
      var b = li.querySelector("button.t");
      return b && b.getAttribute("aria-expanded") === "false";
    };

    /* A unit is in a state when the row's data-ss (all phases: the states of its phases, as the server
       filters and the overview counts) holds it; within a phase, when its state (data-s) is it. */
    var inState = function (li, st) {
      var ss = li.getAttribute("data-ss");
      return ss === null ? li.getAttribute("data-s") === st : (" " + ss + " ").indexOf(" " + st + " ") >= 0;
    };

    var apply = function () {
      var text = fold(q.value.trim()), st = state.value, kd = kind.value;
      var filtering = !!(text || st || kd);
      var keep = new Array(rows.length), shown = 0, matched = 0, i;
      if (filtering) {
        /* keep matches and their ancestors; stack holds the ancestors of the current row */
        var stack = [];
        for (i = 0; i < rows.length; i++) {
          var li = rows[i];
          while (stack.length && depth[stack[stack.length - 1]] >= depth[i]) { stack.pop(); }
          var match = (!st || inState(li, st)) && (!kd || li.getAttribute("data-k") === kd) &&
            (!text || names[i].indexOf(text) >= 0);
          keep[i] = match;
          if (match) { matched++; }
          li.classList.toggle("ctx", !match);
          if (match) {
            for (var j = stack.length - 1; j >= 0 && !keep[stack[j]]; j--) { keep[stack[j]] = true; }
          }
          stack.push(i);
        }
      }
      var collapsedAt = Infinity;
      for (i = 0; i < rows.length; i++) {
        if (depth[i] <= collapsedAt) { collapsedAt = Infinity; }
        var visible = filtering ? keep[i] : depth[i] <= collapsedAt;
        if (!filtering && depth[i] > collapsedAt) { visible = false; }
        if (!filtering) { rows[i].classList.remove("ctx"); }
        rows[i].hidden = !visible;
        if (visible) { shown++; }
        if (!filtering && visible && isCollapsed(rows[i]) && collapsedAt === Infinity) { collapsedAt = depth[i]; }
      }
      if (count) {
        /* The matches are the number to compare with the overview's cards; their ancestors are only there to place them. */
        count.textContent = !filtering ? "Đang hiển thị " + shown + "/" + rows.length + " đơn vị." :
          matched + " đơn vị khớp bộ lọc" + (shown > matched ? "; " + (shown - matched) + " đơn vị cấp trên hiện mờ để thấy vị trí trong cây." : ".");
      }
      if (empty) { empty.hidden = shown > 0; }
    };

    /* Start with the root and its children open, deeper levels closed (unless the server filtered). */
    if (!serverFiltered) {
      rows.forEach(function (li, i) { if (depth[i] >= 1) { setExpanded(li, false); } });
    }
    tree.addEventListener("click", function (e) {
      var b = e.target.closest("button.t");
      if (!b) { return; }
      b.setAttribute("aria-expanded", b.getAttribute("aria-expanded") === "false" ? "true" : "false");
      apply();
    });
    document.getElementById("expand-all").addEventListener("click", function () { rows.forEach(function (li) { setExpanded(li, true); }); apply(); });
    document.getElementById("collapse-all").addEventListener("click", function () {
      rows.forEach(function (li, i) { setExpanded(li, depth[i] < 1); }); apply();
    });
    var remember = function () {
      var params = new URLSearchParams(window.location.search);
      [["q", q.value.trim()], ["state", state.value], ["kind", kind.value]].forEach(function (p) {
        if (p[1]) { params.set(p[0], p[1]); } else { params.delete(p[0]); }
      });
      var s = params.toString();
      window.history.replaceState(null, "", window.location.pathname + (s ? "?" + s : ""));
    };
    [q, state, kind].forEach(function (el) {
      el.addEventListener("input", function () { apply(); remember(); });
      el.addEventListener("change", function () {
        /* A page the server filtered (a link from the overview) holds only the rows that matched:
           another state or kind is asked of the server, not looked for among those rows. */
        if (serverFiltered && el !== q) { form.submit(); return; }
        apply(); remember();
      });
    });
    var phase = document.getElementById("phase");
    phase.addEventListener("change", function () { form.submit(); });
    apply();

    /* Live: states and percentages refresh in place, keeping what is open and the filters. */
    poll(function () { return tree.getAttribute("data-status"); }, function (data) {
      var labels = data.labels || {};
      Object.keys(data.units || {}).forEach(function (code) {
        var li = byCode[code];
        if (!li) { return; }
        var s = data.units[code][0], pct = data.units[code][1];
        if (data.units[code].length > 2) { li.setAttribute("data-ss", data.units[code][2].join(" ")); }
        if (li.getAttribute("data-s") !== s) {
          li.setAttribute("data-s", s);
          var badge = li.querySelector(".b");
          badge.className = "b s-" + s;
          badge.textContent = labels[s] || s;
        }
        li.querySelector("progress").value = pct || 0;
        li.querySelector(".p").textContent = pct === null ? "—" : String(pct).replace(".", ",") + "%";
      });
      apply();
    }, "json");
  }

  /* 3. Upload: drop several files, see each one's check, send them as one submission. */
  var upload = document.getElementById("upload-form");
  if (upload) {
    var input = document.getElementById("files"), drop = document.getElementById("drop");
    var list = document.getElementById("file-list"), result = document.getElementById("result");
    var item = document.getElementById("item"), memberRow = document.getElementById("member-row");
    var maxBytes = parseInt(upload.getAttribute("data-max"), 10);
    var allowed = upload.getAttribute("data-accept").split(",");
    // As the server words sizes (uploads.format_size), so a small file is not "0,0 MB".
    var mb = function (n) {
      if (n < 1024) return n + " B";
      return n < 1048576 ? (n / 1024).toFixed(1).replace(".", ",") + " KB" : (n / 1048576).toFixed(1).replace(".", ",") + " MB";
    };
    var bytes = function (n) { return n.toLocaleString("de-DE") + " byte"; };

    var itemNote = document.getElementById("item-note");
    var syncMember = function () {
      var opt = item.options[item.selectedIndex];
      memberRow.hidden = !(opt && opt.getAttribute("data-m") === "1");
      // The plan's own words for the chosen item (its form, where a copy goes).
      var note = opt ? opt.getAttribute("data-note") || "" : "";
      itemNote.textContent = note ? "Kế hoạch ghi: " + note : "";
      itemNote.hidden = !note;
    };
    item.addEventListener("change", syncMember);
    syncMember();

    var entry = function (cls, name, why) {
      var li = document.createElement("li");
      li.className = cls;
      var strong = document.createElement("strong");
      strong.textContent = name;
      var span = document.createElement("span");
      span.className = "why";
      span.textContent = why;
      li.appendChild(strong);
      li.appendChild(span);
      return li;
    };
    var showChosen = function () {
      list.innerHTML = "";
      Array.prototype.forEach.call(input.files, function (f) {
        var dot = f.name.lastIndexOf("."), ext = dot > 0 ? f.name.slice(dot).toLowerCase() : "";
        var why = "Sẵn sàng (" + mb(f.size) + ")", cls = "ready";
        if (allowed.indexOf(ext) < 0) { why = "Loại tệp không được nhận (" + (ext || "không có đuôi") + ")"; cls = "bad"; }
        else if (f.size > maxBytes) {
          // Just over the limit both round alike: then exact bytes, as the server says.
          why = mb(f.size) === mb(maxBytes) ? "Tệp quá lớn (" + bytes(f.size) + "; tối đa " + bytes(maxBytes) + " = " + mb(maxBytes) + ")"
                                            : "Tệp quá lớn (" + mb(f.size) + "; tối đa " + mb(maxBytes) + ")";
          cls = "bad";
        }
        else if (f.size === 0) { why = "Tệp rỗng"; cls = "bad"; }
        list.appendChild(entry(cls, f.name, why));
      });
    };
    input.addEventListener("change", showChosen);
    ["dragenter", "dragover"].forEach(function (t) {
      drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (t) {
      drop.addEventListener(t, function () { drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; showChosen(); }
    });

    upload.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = document.getElementById("submit");
      button.disabled = true;
      result.innerHTML = "";
      var pending = document.createElement("p");
      pending.className = "msg info";
      pending.textContent = "Đang gửi…";
      result.appendChild(pending);
      fetch(upload.action, {
        method: "POST", body: new FormData(upload), credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
      }).then(function (r) {
        return r.json().catch(function () { return { ok: false, message: "Lỗi máy chủ (" + r.status + ").", files: [] }; });
      }).then(function (data) {
        result.innerHTML = "";
        var msg = document.createElement("p");
        msg.id = "result-message";
        msg.className = "msg " + (data.ok ? "ok" : "err");
        msg.textContent = data.message || data.error || "";
        result.appendChild(msg);
        var ul = document.createElement("ul");
        ul.className = "files";
        (data.files || []).forEach(function (f) { ul.appendChild(entry(f.status, f.name, f.message)); });
        result.appendChild(ul);
        if (data.ok) { input.value = ""; list.innerHTML = ""; }
      }).catch(function () {
        result.innerHTML = "";
        result.appendChild(entry("refused", "", "Không gửi được: mất kết nối tới máy chủ."));
      }).then(function () { button.disabled = false; });
    });
  }
})();
