// The page of `speechqa serve`. Every piece of speech or question text goes in through
// textContent or text nodes, never innerHTML: a speech holding "<script>" shows it as text.
"use strict";

const MESSAGES = {
  empty_question: "请输入问题。",
  question_too_long: "问题太长了，请缩短后再问。",
  too_large: "问题太长了，请缩短后再问。",
  no_words: "问题里没有可以检索的文字，请用文字提问。",
  rate_limited: "提问太频繁了，请稍等片刻再试。",
  busy: "提问的人太多了，请稍后再试。",
  unavailable: "索引正在准备中，请稍候再试。",
  search_unavailable: "检索服务暂时不可用，恢复后即可回答。",
  unauthorized: "需要访问口令，请在上方输入。",
  not_found: "没有找到这一段（索引可能已更新），请重新提问。",
  network: "无法连接服务器，请检查网络后再试。",
};
const POSSIBLY_RELATED = "可能相关的段落（仅供参考）：";
const SOURCES = "出处：";
const TOKEN_KEY = "speechqa-token";

const $ = (id) => document.getElementById(id);
let current = null; // {question, pageSize, shown, hits: Map rank → hit, quotes: Map rank → sentences}
let retry = null; // what to run again once an access token is given
let asking = 0; // the newest question's number: answers to older ones are dropped
const RETRIES = 40;

class ApiError extends Error {
  constructor(code) {
    super(code);
    this.code = code;
  }
}

async function call(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError("network");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(data && data.error ? data.error.code : "http_" + response.status);
  return data;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// `text` with the [start, end) `spans` wrapped in <mark>, as text nodes only.
function marked(text, spans, className) {
  const fragment = document.createDocumentFragment();
  let cursor = 0;
  for (const [start, end] of [...spans].sort((a, b) => a[0] - b[0])) {
    if (start < cursor || end <= start) continue;
    fragment.append(text.slice(cursor, start), el("mark", className, text.slice(start, end)));
    cursor = end;
  }
  fragment.append(text.slice(cursor));
  return fragment;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function fail(error, again) {
  const code = error instanceof ApiError ? error.code : "network";
  if (code === "unauthorized") {
    retry = again;
    $("token-box").hidden = false;
    $("token").focus();
  }
  say(MESSAGES[code] || `出错了（${code}），请稍后再试。`, true);
}

async function ask(question, attempt = 0) {
  question = question.trim();
  if (!question) return say(MESSAGES.empty_question, true);
  const ticket = attempt ? asking : ++asking;
  history.replaceState(null, "", "?q=" + encodeURIComponent(question));
  $("submit").disabled = true;
  say("正在检索…");
  try {
    const answer = await call("POST", "/api/ask", { question });
    if (ticket !== asking) return; // a newer question was asked meanwhile
    showAnswer(answer);
    say("");
    // A task queued from the next frame's callback runs once that frame has painted.
    requestAnimationFrame(() => setTimeout(() => performance.mark("speechqa-answer-painted")));
  } catch (error) {
    const code = error instanceof ApiError ? error.code : "network";
    if ((code === "unavailable" || code === "search_unavailable" || code === "busy") && attempt < RETRIES) {
      // The index is still being built, search (Milvus) is down, or the server is full: ask again shortly.
      say(`${MESSAGES[code]}（稍后自动重试）`);
      setTimeout(() => ticket === asking && ask(question, attempt + 1), code === "busy" ? 1000 : 3000);
    } else if (ticket === asking) {
      fail(error, () => ask(question));
    }
  } finally {
    $("submit").disabled = false;
  }
}

function showAnswer(answer) {
  const quotes = new Map();
  for (const sentence of answer.direct_answer) {
    quotes.set(sentence.citation, [...(quotes.get(sentence.citation) || []), sentence.text]);
  }
  current = { question: answer.question, pageSize: answer.hits.length, shown: 0, hits: new Map(), quotes };
  const direct = $("direct-text");
  direct.replaceChildren();
  for (const sentence of answer.direct_answer) {
    const line = el("p", "", sentence.text);
    const ref = el("a", "ref", `[${sentence.citation}]`);
    ref.href = `#c-${sentence.citation}`;
    ref.addEventListener("click", (event) => {
      event.preventDefault();
      flash(sentence.citation);
    });
    line.append(ref);
    direct.append(line);
  }
  $("direct").hidden = !(answer.found && answer.direct_answer.length);
  $("not-found").hidden = answer.found;
  $("sources-title").textContent = answer.found ? SOURCES : POSSIBLY_RELATED;
  $("sources-title").hidden = !answer.hits.length;
  $("citations").replaceChildren();
  addHits(answer.hits);
  $("answer").hidden = false;
}

function addHits(hits) {
  for (const hit of hits) {
    current.hits.set(hit.rank, hit);
    const item = el("li");
    item.id = `c-${hit.rank}`;
    const cite = el("a", "cite");
    cite.href = `#c-${hit.rank}`;
    cite.title = "查看整段";
    cite.append(el("span", "num", `[${hit.rank}]`), hit.citation);
    cite.addEventListener("click", (event) => {
      event.preventDefault();
      openParagraph(hit.rank);
    });
    const actions = el("div", "actions");
    const open = el("button", "open", "查看全文");
    open.type = "button";
    open.addEventListener("click", () => openParagraph(hit.rank));
    const copy = el("button", "copy", "复制引文");
    copy.type = "button";
    copy.addEventListener("click", () => copyQuote(hit));
    actions.append(open, copy);
    item.append(cite, el("p", "snippet"), actions);
    item.querySelector(".snippet").append(marked(hit.snippet, hit.highlights));
    $("citations").append(item);
  }
  current.shown += hits.length;
  $("more").hidden = !current.pageSize || hits.length < current.pageSize;
}

function flash(rank) {
  const item = $(`c-${rank}`);
  if (!item) return;
  item.scrollIntoView({ behavior: "smooth", block: "center" });
  item.classList.add("flash");
  setTimeout(() => item.classList.remove("flash"), 1500);
}

async function more() {
  const asked = current;
  $("more").disabled = true;
  try {
    const page = await call("POST", "/api/more", { question: asked.question, offset: asked.shown });
    if (asked !== current) return;
    addHits(page.hits);
    if (!page.hits.length) say("没有更多结果了。");
  } catch (error) {
    fail(error, more);
  } finally {
    $("more").disabled = false;
  }
}

async function openParagraph(rank) {
  const hit = current.hits.get(rank);
  try {
    const view = await call("GET", "/api/paragraphs/" + encodeURIComponent(hit.passage_id));
    const quotes = hit.rank === hit.number ? current.quotes.get(hit.number) || [] : [];
    const spans = quotes.map((q) => [view.text.indexOf(q), view.text.indexOf(q) + q.length]).filter((s) => s[0] >= 0);
    $("p-citation").textContent = `[${rank}] ${view.citation}`;
    $("p-note").textContent = view.note;
    $("p-before").textContent = view.before ? "（上一段）" + view.before : "";
    $("p-after").textContent = view.after ? "（下一段）" + view.after : "";
    const passageOnly = spans.length === 0 && view.passage && view.passage[1] - view.passage[0] < view.text.length;
    $("p-text").replaceChildren(marked(view.text, spans.length ? spans : passageOnly ? [view.passage] : [], "quote"));
    $("paragraph").showModal();
  } catch (error) {
    fail(error, () => openParagraph(rank));
  }
}

async function copyQuote(hit) {
  const text = `“${hit.text}”（${hit.citation}）`;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Plain http on an intranet address is not a secure context: no Clipboard API there.
    const area = el("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  say(`已复制第 ${hit.rank} 条引文及出处。`);
}

async function loadSpeeches() {
  try {
    const data = await call("GET", "/api/speeches");
    const list = $("speech-list");
    list.replaceChildren(...data.speeches.map((s) => el("li", "", `《${s.title}》${s.subtitle ? " " + s.subtitle : ""} · ${s.paragraphs} 段`)));
    $("speeches").querySelector("summary").textContent = `已收录的讲话（${data.speeches.length} 篇）`;
  } catch (error) {
    if (error.code === "unavailable") setTimeout(loadSpeeches, 3000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    ask($("question").value);
  });
  $("more").addEventListener("click", more);
  $("p-close").addEventListener("click", () => $("paragraph").close());
  $("token-box").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-box").hidden = true;
    if (retry) retry();
    loadSpeeches();
  });
  const question = new URLSearchParams(location.search).get("q");
  if (question) {
    $("question").value = question;
    ask(question);
  }
  loadSpeeches();
});
