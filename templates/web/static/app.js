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

  /* 1. Live fragments: <div data-live="url"> is replaced by the server's fragment; with data-live-part="#id",
     by that part of it only (one fetch for every element of a URL). */
  var live = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), function (el) {
    var url = el.getAttribute("data-live");
    (live[url] = live[url] || []).push(el);
  });
  Object.keys(live).forEach(function (url) {
    poll(function () { return url; }, function (html) {
      var parsed = null;
      live[url].forEach(function (el) {
        var part = el.getAttribute("data-live-part"), text = html;
        if (part) {
          if (!parsed) { parsed = document.createElement("template"); parsed.innerHTML = html; }
          var found = parsed.content.querySelector(part);
          if (!found) { return; }
          text = found.outerHTML;
        }
        if (el.innerHTML !== text) { el.innerHTML = text; }
      });
    }, "text");
  });

  /* A notice a redirect asks for (?notice=...): known words only, then the address is left clean. */
  var NOTICES = {
    "link-used": "Đồng chí đã đăng nhập rồi: đường dẫn đăng nhập trong thư đã được dùng, không cần dùng lại."
  };
  var params = new URLSearchParams(window.location.search);
  var notice = NOTICES[params.get("notice")];
  var main = document.querySelector("main");
  if (notice && main) {
    var note = document.createElement("p");
    note.className = "msg info";
    note.id = "page-notice";
    note.setAttribute("role", "status");
    note.textContent = notice;
    main.insertBefore(note, main.firstChild);
    params.delete("notice");
    var rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }

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

    /* The phases a row's unit is late in ([state, label, title] each, as _tree_rows.html writes them). */
    var showLate = function (li, late) {
      var box = li.querySelector(".late");
      var text = late.map(function (p) { return p[1]; }).join("");
      if ((box ? box.textContent : "") === text) { return; }
      if (!late.length) { if (box) { box.remove(); } return; }
      if (!box) {
        box = document.createElement("span");
        box.className = "late";
        li.insertBefore(box, li.querySelector(".b"));
      }
      box.textContent = "";
      late.forEach(function (p) {
        var chip = document.createElement("span");
        chip.className = "lp lp-" + p[0];
        chip.title = p[2];
        chip.textContent = p[1];
        box.appendChild(chip);
      });
    };

    /* Live: states, percentages and late phases refresh in place, keeping what is open and the filters. */
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
        showLate(li, (data.late || {})[code] || []);
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
    var member = document.getElementById("member"), button = document.getElementById("submit");
    var blocked = document.getElementById("send-blocked"), warning = document.getElementById("replace-warning");
    var doneSource = document.getElementById("done-members");
    var doneMembers = doneSource ? JSON.parse(doneSource.textContent || "{}") : {};
    var maxBytes = parseInt(upload.getAttribute("data-max"), 10);
    var allowed = upload.getAttribute("data-accept").split(",");
    var sending = false;
    // As the server words sizes (uploads.format_size), so a small file is not "0,0 MB".
    var mb = function (n) {
      if (n < 1024) return n + " B";
      return n < 1048576 ? (n / 1024).toFixed(1).replace(".", ",") + " KB" : (n / 1048576).toFixed(1).replace(".", ",") + " MB";
    };
    var bytes = function (n) { return n.toLocaleString("de-DE") + " byte"; };

    var itemNote = document.getElementById("item-note");
    var memberOrder = Array.prototype.slice.call(member.options, 1);
    /* The chosen item's current file ("" when it has none): a unit's document, or the chosen member's. */
    var currentFile = function () {
      var opt = item.options[item.selectedIndex];
      if (!opt || !opt.value) { return ""; }
      if (opt.getAttribute("data-m") === "1") { return (doneMembers[opt.value] || {})[member.value] || ""; }
      return opt.getAttribute("data-done") || "";
    };
    var syncWarning = function () {
      var file = currentFile();
      warning.hidden = !file;
      warning.textContent = file ? "Mục này đã có tệp " + file + "; nộp tiếp sẽ thay thế tệp đó (tệp cũ vẫn được lưu trong lịch sử). " +
        "Nếu tài liệu có nhiều trang, hãy chọn tất cả các trang cùng một lần." : "";
    };
    /* The members of a member's document: those still missing first, the ones sent marked with their file. */
    var syncMembers = function () {
      var done = doneMembers[item.value] || {};
      var chosen = member.value;
      var missing = [], sent = [];
      memberOrder.forEach(function (o) {
        var file = done[o.value];
        o.textContent = (file ? "✓ " : "") + o.getAttribute("data-name") + (file ? " — đã nộp: " + file : "");
        (file ? sent : missing).push(o);
      });
      missing.concat(sent).forEach(function (o) { member.appendChild(o); });
      member.value = chosen;
    };
    var syncMember = function () {
      var opt = item.options[item.selectedIndex];
      memberRow.hidden = !(opt && opt.getAttribute("data-m") === "1");
      // The plan's own words for the chosen item (its form, where a copy goes).
      var note = opt ? opt.getAttribute("data-note") || "" : "";
      itemNote.textContent = note ? "Kế hoạch ghi: " + note : "";
      itemNote.hidden = !note;
      syncMembers();
      syncWarning();
    };
    item.addEventListener("change", syncMember);
    member.addEventListener("change", syncWarning);
    syncMember();

    /* An item just sent holds a file now: marked as the server would mark it. */
    var markDone = function (done) {
      if (!done || !done.item || !done.label) { return; }
      var opt = Array.prototype.filter.call(item.options, function (o) { return o.value === done.item; })[0];
      if (!opt) { return; }
      if (opt.getAttribute("data-m") === "1") {
        doneMembers[done.item] = doneMembers[done.item] || {};
        doneMembers[done.item][done.member] = done.label;
        var all = doneMembers[done.item], codes = Object.keys(all);
        var sent = codes.filter(function (c) { return all[c]; }).length;
        opt.textContent = (sent === codes.length ? "✓ " : "") + opt.getAttribute("data-name") + " — đã nộp " + sent + "/" + codes.length + " đảng viên";
      } else {
        opt.setAttribute("data-done", done.label);
        opt.textContent = "✓ " + opt.getAttribute("data-name") + " — đã nộp: " + done.label;
      }
    };

    var entry = function (cls, name, why, problems) {
      var li = document.createElement("li");
      li.className = cls;
      var strong = document.createElement("strong");
      strong.textContent = name;
      li.appendChild(strong);
      if (problems && problems.length) {
        li.appendChild(lines(problems));
      } else {
        var span = document.createElement("span");
        span.className = "why";
        span.textContent = why;
        li.appendChild(span);
      }
      return li;
    };
    var lines = function (texts) {
      var ul = document.createElement("ul");
      ul.className = "problems";
      texts.forEach(function (t) { var li = document.createElement("li"); li.textContent = t; ul.appendChild(li); });
      return ul;
    };
    /* Take one file out of the chosen ones (a phone cannot drag them; choosing again is the other way). */
    var removeFile = function (index) {
      var kept = new DataTransfer();
      Array.prototype.forEach.call(input.files, function (f, i) { if (i !== index) { kept.items.add(f); } });
      input.files = kept.files;
      showChosen();
    };
    var showChosen = function () {
      list.innerHTML = "";
      var bad = [];
      Array.prototype.forEach.call(input.files, function (f, index) {
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
        var li = entry(cls, f.name, why);
        if (cls === "bad") {
          bad.push(f.name);
          var drop1 = document.createElement("button");
          drop1.type = "button";
          drop1.className = "light remove";
          drop1.textContent = "Bỏ tệp này";
          drop1.addEventListener("click", function () { removeFile(index); });
          li.appendChild(drop1);
        }
        list.appendChild(li);
      });
      // A file the server would refuse is not sent (a 60 MB photo over a phone line, to be refused).
      blocked.hidden = !bad.length;
      blocked.textContent = bad.length ? "Chưa nộp được: hãy bỏ " + (bad.length > 1 ? "các tệp " : "tệp ") + bad.join(", ") +
        " (bấm \u201cBỏ tệp này\u201d bên dưới tên tệp, hoặc chọn lại các tệp) rồi bấm Nộp." : "";
      button.disabled = sending || bad.length > 0;
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

    var loginAgain = function () {
      var p = document.createElement("p");
      var a = document.createElement("a");
      a.className = "button";
      a.id = "login-again";
      a.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
      a.textContent = "Đăng nhập lại";
      p.appendChild(a);
      return p;
    };

    upload.addEventListener("submit", function (e) {
      e.preventDefault();
      if (button.disabled) { return; }
      sending = true;
      button.disabled = true;
      result.innerHTML = "";
      var pending = document.createElement("p");
      pending.className = "msg info";
      pending.textContent = "Đang gửi…";
      result.appendChild(pending);
      var status = 0;
      fetch(upload.action, {
        method: "POST", body: new FormData(upload), credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
      }).then(function (r) {
        status = r.status;
        return r.json().catch(function () { return { ok: false, message: "Lỗi máy chủ (" + r.status + ").", files: [] }; });
      }).then(function (data) {
        result.innerHTML = "";
        var msg = document.createElement("p");
        msg.id = "result-message";
        msg.className = "msg " + (data.ok ? (data.level === "notice" ? "notice" : "ok") : "err");
        msg.textContent = data.message || data.error || "";
        result.appendChild(msg);
        if (status === 401) { result.appendChild(loginAgain()); }
        if (data.errors && data.errors.length) { result.appendChild(lines(data.errors)); }
        (data.warnings || []).forEach(function (w) {
          var box = document.createElement("div");
          box.className = "msg warn result-warning";
          box.setAttribute("role", "alert");
          var head = document.createElement("strong");
          head.textContent = "⚠ Cần kiểm tra: ";
          box.appendChild(head);
          box.appendChild(document.createTextNode(w));
          result.appendChild(box);
        });
        var ul = document.createElement("ul");
        ul.className = "files";
        (data.files || []).forEach(function (f) { ul.appendChild(entry(f.status, f.name, f.message, f.problems)); });
        result.appendChild(ul);
        if (data.hint) {
          var hint = document.createElement("p");
          hint.className = "muted";
          hint.textContent = data.hint;
          result.appendChild(hint);
        }
        if (data.ok) {
          // Sent: the next page or member starts from a clean form (not the same item again by mistake).
          markDone(data.done);
          input.value = "";
          list.innerHTML = "";
          item.value = "";
          member.value = "";
          syncMember();
        } else {
          // Nothing was stored: the chosen files are no longer "ready".
          Array.prototype.forEach.call(list.querySelectorAll("li.ready"), function (li) {
            li.className = "not_stored";
            li.querySelector(".why").textContent = "Chưa lưu: xem kết quả bên dưới.";
          });
        }
      }).catch(function () {
        result.innerHTML = "";
        result.appendChild(entry("refused", "", "Không gửi được: mất kết nối tới máy chủ. Chưa có gì được lưu; hãy thử lại."));
      }).then(function () {
        sending = false;
        showChosenButton();
        result.scrollIntoView({ behavior: "smooth", block: "start" });
      });
    });
    var showChosenButton = function () { button.disabled = !blocked.hidden; };
  }
})();
