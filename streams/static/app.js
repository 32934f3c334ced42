// The live book page: two SSE streams of this worker (books, trades) and the replay's control API through
// /control/*. Prices arrive as 1e-9 fixed-point integers and are formatted as exact decimal text.
"use strict";

const DEPTH = 20;
const PRICE_POINTS = 3000;
const TRADE_ROWS = 100;
const SEEK_GAP_S = 300; // a jump in session time larger than this starts the price chart afresh
const SPEEDS = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, null]; // null: as fast as possible
const $ = (id) => document.getElementById(id);

const state = {
  instrument: null, books: null, trades: null, book: null, updates: 0, render: false,
  prices: [[], [], [], []], marks: [], replay: null, seekPending: null,
};

// ------------------------------------------------------------------ formatting

function px(raw) {
  if (raw === null || raw === undefined) return "–";
  const neg = raw < 0;
  const digits = Math.abs(raw).toString().padStart(10, "0");
  let frac = digits.slice(-9).replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return (neg ? "-" : "") + digits.slice(0, -9) + "." + frac;
}

function sessionTime(ns) {
  if (!ns) return "–";
  const d = new Date(Math.floor(ns / 1e6));
  return d.toISOString().replace("T", " ").replace("Z", "");
}

function clock(ns) {
  return new Date(Math.floor(ns / 1e6)).toISOString().slice(11, 23);
}

// ------------------------------------------------------------------ streams

function connect(instrument) {
  disconnect();
  Object.assign(state, { instrument, book: null, updates: 0, prices: [[], [], [], []], marks: [] });
  $("trades").tBodies[0].replaceChildren();
  $("anomalies").replaceChildren();
  history.replaceState(null, "", `/view?instrument=${instrument}`);
  setConn("connecting");

  const books = new EventSource(`/stream/books/${instrument}?depth=${DEPTH}`);
  books.addEventListener("open", () => setConn("live"));
  books.addEventListener("error", () => setConn(books.readyState === EventSource.CLOSED ? "offline" : "reconnecting"));
  books.addEventListener("book", (e) => onBook(JSON.parse(e.data)));
  books.addEventListener("anomaly", (e) => onAnomaly(JSON.parse(e.data)));
  books.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  books.addEventListener("reset", () => { state.prices = [[], [], [], []]; state.marks = []; });
  state.books = books;

  const trades = new EventSource(`/stream/trades/${instrument}?backfill=${TRADE_ROWS}`);
  trades.addEventListener("trade", (e) => onTrade(JSON.parse(e.data)));
  trades.addEventListener("gap", (e) => onGap(JSON.parse(e.data)));
  state.trades = trades;
}

function disconnect() {
  for (const source of [state.books, state.trades]) if (source) source.close();
  state.books = state.trades = null;
}

function setConn(text) {
  const el = $("conn");
  el.dataset.state = text;
  el.textContent = text;
}

function onBook(book) {
  state.book = book;
  state.updates += 1;
  const bid = book.bids[0], ask = book.asks[0];
  const [t, b, a, s] = state.prices;
  const x = book.ts_recv / 1e9;
  if (t.length && (x < t[t.length - 1] || x - t[t.length - 1] > SEEK_GAP_S)) { // a seek: start the chart afresh
    t.length = b.length = a.length = s.length = 0;
    state.marks = [];
  }
  t.push(x);
  b.push(bid ? bid[0] / 1e9 : null);
  a.push(ask ? ask[0] / 1e9 : null);
  s.push(bid && ask ? (ask[0] - bid[0]) / 1e9 : null);
  if (t.length > PRICE_POINTS) for (const series of state.prices) series.splice(0, t.length - PRICE_POINTS);
  schedule();
}

function onStatus(status) {
  if (!status.kept) $("ladder").tBodies[0].replaceChildren(row(["", "", "not kept by this worker (yet)", "", ""]));
}

function onAnomaly(a) {
  state.marks.push({ x: a.ts_recv / 1e9, kind: a.kind });
  if (state.marks.length > 200) state.marks.shift();
  const li = document.createElement("li");
  li.innerHTML = `<b></b> <span class="mono"></span><br><span class="dim"></span>`;
  li.children[0].textContent = a.kind;
  li.children[1].textContent = clock(a.ts_recv);
  li.children[3].textContent = a.detail;
  const list = $("anomalies");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

function onTrade(trade) {
  const tr = row([clock(trade.ts_recv), trade.side === "B" ? "buy" : trade.side === "A" ? "sell" : "–",
    px(trade.price), String(trade.size)]);
  tr.className = trade.side + (trade.synthetic ? " synthetic" : "");
  const body = $("trades").tBodies[0];
  body.prepend(tr);
  while (body.children.length > TRADE_ROWS) body.lastChild.remove();
}

function onGap(gap) {
  const tr = row(["", "", `${gap.missed} trades missed`, ""]);
  $("trades").tBodies[0].prepend(tr);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  return tr;
}

// ------------------------------------------------------------------ rendering (once per animation frame)

function schedule() {
  if (state.render) return;
  state.render = true;
  requestAnimationFrame(() => { state.render = false; render(); });
}

function render() {
  const book = state.book;
  if (!book) return;
  $("session-time").textContent = sessionTime(book.ts_recv);
  $("session-time").dataset.ts = String(book.ts_recv);
  $("seq").textContent = String(book.sequence);
  $("updates").textContent = String(state.updates);
  $("updates").dataset.count = String(state.updates);
  const bid = book.bids[0], ask = book.asks[0];
  $("spread").textContent = bid && ask ? px(ask[0] - bid[0]) : "–";
  $("crossed").hidden = !book.crossed;
  renderLadder(book);
  renderCharts(book);
}

function renderLadder(book) {
  const rows = [];
  const most = Math.max(1, ...book.bids.map((l) => l[1]), ...book.asks.map((l) => l[1]));
  const asks = book.asks.slice(0, DEPTH).reverse();
  asks.forEach((level, i) => rows.push(ladderRow("ask", level, most, i === asks.length - 1)));
  const bid = book.bids[0], ask = book.asks[0];
  const spread = row(["", "", bid && ask ? `spread ${px(ask[0] - bid[0])}` : "one side empty", "", ""]);
  spread.className = "spread";
  rows.push(spread);
  book.bids.slice(0, DEPTH).forEach((level, i) => rows.push(ladderRow("bid", level, most, i === 0)));
  $("ladder").tBodies[0].replaceChildren(...rows);
}

function ladderRow(side, [price, size, count], most, best) {
  const cells = side === "bid" ? [String(count), String(size), px(price), "", ""] : ["", "", px(price), String(size), String(count)];
  const tr = row(cells);
  tr.className = side + (best ? " best" : "");
  tr.dataset.price = String(price);
  tr.children[2].className = "px";
  const sizeCell = tr.children[side === "bid" ? 1 : 3];
  sizeCell.className = side === "bid" ? "bidsz" : "asksz";
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = `${Math.round((100 * size) / most)}%`;
  sizeCell.appendChild(bar);
  return tr;
}

// ------------------------------------------------------------------ charts (uPlot, when installed)

const charts = { price: null, depth: null };

function chartWidth(el) {
  return Math.max(300, el.clientWidth || 600);
}

function renderCharts(book) {
  if (typeof uPlot === "undefined") {
    $("chart-note").hidden = false;
    return;
  }
  const priceEl = $("price-chart"), depthEl = $("depth-chart");
  if (!charts.price) {
    charts.price = new uPlot({
      width: chartWidth(priceEl), height: 260, legend: { live: false },
      scales: { x: { time: true }, spread: { auto: true } },
      axes: [{ stroke: "#7d8794", grid: { stroke: "#2a3038" } },
        { stroke: "#7d8794", grid: { stroke: "#2a3038" }, size: 70 },
        { scale: "spread", side: 1, stroke: "#7d8794", grid: { show: false } }],
      series: [{}, { label: "bid", stroke: "#2fbf71", width: 1.5 }, { label: "ask", stroke: "#e5484d", width: 1.5 },
        { label: "spread", stroke: "#4c9aff", width: 1, scale: "spread" }],
      hooks: { draw: [drawMarks] },
    }, state.prices, priceEl);
    charts.depth = new uPlot({
      width: chartWidth(depthEl), height: 200, legend: { live: false }, scales: { x: { time: false } },
      axes: [{ stroke: "#7d8794", grid: { stroke: "#2a3038" } }, { stroke: "#7d8794", grid: { stroke: "#2a3038" } }],
      series: [{}, { label: "bids", stroke: "#2fbf71", fill: "rgba(47,191,113,0.2)", paths: uPlot.paths.stepped({ align: -1 }) },
        { label: "asks", stroke: "#e5484d", fill: "rgba(229,72,77,0.2)", paths: uPlot.paths.stepped({ align: 1 }) }],
    }, depthData(book), depthEl);
    return;
  }
  charts.price.setData(state.prices);
  charts.depth.setData(depthData(book));
}

function depthData(book) {
  // cumulative size from the touch outwards, on one ascending price axis (a crossed book overlaps the sides)
  const bid = new Map(), ask = new Map();
  let cum = 0;
  for (const [price, size] of book.bids) { cum += size; bid.set(price, cum); }
  cum = 0;
  for (const [price, size] of book.asks) { cum += size; ask.set(price, cum); }
  const prices = [...new Set([...bid.keys(), ...ask.keys()])].sort((p, q) => p - q);
  return [prices.map((p) => p / 1e9), prices.map((p) => bid.get(p) ?? null), prices.map((p) => ask.get(p) ?? null)];
}

function drawMarks(u) {
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = "rgba(229,72,77,0.7)";
  ctx.fillStyle = "rgba(229,72,77,0.9)";
  ctx.font = `${10 * devicePixelRatio}px sans-serif`;
  for (const mark of state.marks) {
    const x = u.valToPos(mark.x, "x", true);
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillText(mark.kind[0].toUpperCase(), x + 2, u.bbox.top + 12);
  }
  ctx.restore();
}

window.addEventListener("resize", () => {
  for (const [name, el] of [["price", $("price-chart")], ["depth", $("depth-chart")]]) {
    if (charts[name]) charts[name].setSize({ width: chartWidth(el), height: charts[name].height });
  }
});

// ------------------------------------------------------------------ instruments

async function loadInstruments() {
  try {
    const doc = await (await fetch("/books")).json();
    const ids = doc.books.map((b) => b.instrument_id);
    const select = $("instrument");
    const known = [...select.options].map((o) => Number(o.value));
    if (ids.join() !== known.join()) {
      select.replaceChildren(...ids.map((id) => new Option(String(id), String(id))));
    }
    const wanted = Number(new URLSearchParams(location.search).get("instrument")) || ids[0];
    if (state.instrument === null && wanted) {
      if (!ids.includes(wanted)) select.appendChild(new Option(String(wanted), String(wanted)));
      select.value = String(wanted);
      connect(wanted);
    }
  } catch (err) {
    setConn("offline");
  }
}

$("instrument").addEventListener("change", (e) => connect(Number(e.target.value)));

// ------------------------------------------------------------------ playback (the replay's control API)

async function command(path) {
  try {
    const answer = await fetch(`/control/${path}`, { method: "POST" });
    const doc = await answer.json();
    if (!answer.ok) throw new Error(doc.error || answer.statusText);
  } catch (err) {
    $("replay-state").textContent = `replay: ${err.message}`;
  }
  pollReplay();
}

async function pollReplay() {
  try {
    const answer = await fetch("/control/status");
    const doc = await answer.json();
    if (!answer.ok) throw new Error(doc.error || answer.statusText);
    state.replay = doc;
    showReplay(doc);
  } catch (err) {
    state.replay = null;
    $("replay-state").dataset.state = "offline";
    $("replay-state").textContent = "replay: not reachable";
  }
}

function showReplay(doc) {
  const el = $("replay-state");
  el.dataset.state = doc.state;
  el.textContent = `replay: ${doc.state}`;
  $("play").textContent = doc.paused ? "play" : "pause";
  $("play").dataset.paused = String(doc.paused);
  $("speed").textContent = doc.speed === null ? "max" : `${doc.speed}×`;
  $("position").textContent = sessionTime(doc.position_ts);
  const timeline = $("timeline");
  if (doc.session_start && doc.session_end && document.activeElement !== timeline) {
    timeline.min = String(Math.floor(doc.session_start / 1e9));
    timeline.max = String(Math.ceil(doc.session_end / 1e9));
    timeline.value = String(Math.floor(doc.position_ts / 1e9));
  }
}

function togglePlay() {
  command(state.replay && state.replay.paused ? "resume" : "pause");
}

function stepSpeed(direction) {
  const current = state.replay ? state.replay.speed : 1;
  let i = SPEEDS.indexOf(current);
  if (i < 0) i = SPEEDS.findIndex((s) => s === null || s > current) - (direction > 0 ? 1 : 0);
  const next = SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, i + direction))];
  command(`speed?x=${next === null ? "max" : next}`);
}

function seekTo(ns) {
  command(`seek?ts=${BigInt(Math.round(ns / 1e6)) * 1000000n}`);
}

function seekBy(seconds) {
  const at = state.replay ? state.replay.position_ts : state.book && state.book.ts_recv;
  if (at) seekTo(at + seconds * 1e9);
}

$("play").addEventListener("click", togglePlay);
$("faster").addEventListener("click", () => stepSpeed(1));
$("slower").addEventListener("click", () => stepSpeed(-1));
$("timeline").addEventListener("change", (e) => seekTo(Number(e.target.value) * 1e9));
$("seek-go").addEventListener("click", () => {
  const text = $("seek-to").value.trim();
  if (text) command(`seek?ts=${encodeURIComponent(text)}`);
});
$("seek-to").addEventListener("keydown", (e) => { if (e.key === "Enter") $("seek-go").click(); });

document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement && e.target.type === "text") return;
  if (e.target instanceof HTMLSelectElement) return;
  if (e.key === " ") { e.preventDefault(); togglePlay(); }
  else if (e.key === "+" || e.key === "=") stepSpeed(1);
  else if (e.key === "-" || e.key === "_") stepSpeed(-1);
  else if (e.key === "[") seekBy(-300);
  else if (e.key === "]") seekBy(300);
});

loadInstruments();
setInterval(loadInstruments, 5000);
pollReplay();
setInterval(pollReplay, 1000);
