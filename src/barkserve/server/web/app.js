// barkserve's web page: plain JavaScript over the same-origin HTTP API (see docs/web-page.md).
"use strict";

const $ = (id) => document.getElementById(id);
const FINAL_STATES = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 1000;
const LANGUAGES = {
  en: "English", de: "German", es: "Spanish", fr: "French", hi: "Hindi", it: "Italian", ja: "Japanese",
  ko: "Korean", pl: "Polish", pt: "Portuguese", ru: "Russian", tr: "Turkish", zh: "Chinese",
};

const KEY_STORAGE = "barkserve-api-key"; // this tab only (sessionStorage): gone when the tab closes

/** The API key typed in the header ("" when none). */
function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Fetch from the API; resolve to the response, or throw an ApiError carrying the server's code and message. */
async function request(method, path, body) {
  const init = { method, headers: apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError("network", `The server could not be reached (${err.message}).`, 0);
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    const error = (data && data.error) || {};
    throw new ApiError(error.code || `http_${response.status}`, error.message || `HTTP ${response.status}`,
      response.status);
  }
  return response;
}

/**
 * A URL for a file the server made, for players and links: the URL itself, or, with an API key (which
 * players and links cannot send), the file fetched with the key as a blob URL.
 */
async function fileUrl(url) {
  if (!apiKey()) return url;
  return URL.createObjectURL(await (await request("GET", url)).blob());
}

/** Point a download link at a server file; with a key, the file is fetched when the link is clicked. */
function linkFile(link, url, filename) {
  link.download = filename;
  link.href = url;
  link.onclick = !apiKey() ? null : (event) => {
    event.preventDefault();
    fileUrl(url).then((blobUrl) => {
      const save = Object.assign(document.createElement("a"), { href: blobUrl, download: filename });
      save.click();
      setTimeout(() => URL.revokeObjectURL(blobUrl), 60_000);
    });
  };
}

/** Call the API and resolve to its JSON answer. */
async function api(method, path, body) {
  return (await request(method, path, body)).json();
}

// ---- errors next to their fields ----

function clearErrors(form) {
  for (const el of form.querySelectorAll(".error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/**
 * Show an API error next to the field it concerns. `fields` maps error codes and API field names to
 * element ids: a code decides first, then the field the message starts with (the server's messages
 * do: "seed must be ..."). `fallback` is the id of the form-wide message.
 */
function showError(err, fields, fallback) {
  const first = /^(?:field '|form field ')?([a-z_]+)/.exec(err.message);
  const id = fields[err.code] || (first && Object.hasOwn(fields, first[1]) ? fields[first[1]] : null);
  $(id ? `${id}-error` : fallback).textContent = err.message;
  if (id) {
    $(id).setAttribute("aria-invalid", "true");
    $(id).focus();
  }
}

function reportError(target, err) {
  $(target).textContent = err instanceof ApiError ? err.message : String(err);
}

// ---- tabs ----

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
    if (tab.id === "tab-books") refreshJobs();
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length]);
    });
  }
}

// ---- voices ----

function languageOf(name) {
  const match = /^(?:v2\/)?([a-z]{2})_speaker_\d+$/.exec(name);
  return match ? match[1] : null;
}

function fillVoices(select, voices, chosen) {
  const previous = chosen || select.value || voices.default;
  select.replaceChildren();
  const groups = new Map();
  const add = (label, value, text) => {
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push(new Option(text || value, value));
  };
  for (const name of voices.custom) add("Custom voices", name);
  const languages = Object.keys(LANGUAGES);
  const presets = [...voices.presets].sort((a, b) => {
    const la = languages.indexOf(languageOf(a)), lb = languages.indexOf(languageOf(b));
    return (la < 0 ? 99 : la) - (lb < 0 ? 99 : lb) || a.localeCompare(b, "en", { numeric: true });
  });
  for (const name of presets) {
    const lang = languageOf(name);
    add(lang ? LANGUAGES[lang] || lang : "Other", name, name === voices.default ? `${name} (default)` : name);
  }
  for (const [label, options] of groups) {
    const group = document.createElement("optgroup");
    group.label = label;
    group.append(...options);
    select.append(group);
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

async function loadVoices(chosen) {
  const voices = await api("GET", "/voices");
  fillVoices($("voice"), voices, chosen);
  fillVoices($("book-voice"), voices, chosen);
  voiceList = voices;
  const list = $("custom-voices");
  list.replaceChildren();
  for (const name of voices.custom) {
    const item = document.createElement("li");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete voice ${name}`);
    remove.addEventListener("click", async () => {
      try {
        await api("DELETE", `/voices/${encodeURIComponent(name)}`);
        await loadVoices();
      } catch (err) {
        reportError("clone-error", err);
      }
    });
    item.append(document.createTextNode(name + " "), remove);
    list.append(item);
  }
  if (!voices.custom.length) list.append(Object.assign(document.createElement("li"), { textContent: "None yet." }));
}

// ---- speak ----

const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]/g;
const CHUNK_SEC = 13;
const PAUSE_SEC = 0.25;

/**
 * A rough client-side estimate of the server's chunking: speaking rates as in text.py, ~13 s chunks.
 * A stream's first chunk is its first sentence alone, so that the first audio comes soon.
 */
function estimate(text, speed, firstAlone) {
  const seconds = (s) => {
    const cjk = (s.match(CJK) || []).length;
    return cjk / 5 + (s.length - cjk) / 14;
  };
  const sentences = text.trim().split(/(?<=[.!?。！？])\s+/).filter((s) => s.trim());
  let chunks = 0, current = 0, total = 0;
  for (const [i, sentence] of sentences.entries()) {
    const sec = seconds(sentence);
    total += sec;
    if (current > 0 && (current + sec > CHUNK_SEC || (firstAlone && i === 1))) {
      chunks += 1;
      current = 0;
    }
    chunks += Math.floor((current + sec) / CHUNK_SEC);
    current = (current + sec) % CHUNK_SEC;
  }
  if (current > 0) chunks += 1;
  return { chunks, seconds: (total + PAUSE_SEC * Math.max(chunks - 1, 0)) / (speed || 1) };
}

function updateEstimate() {
  const { chunks, seconds } = estimate($("text").value, Number($("speed").value) || 1, streaming());
  $("text-estimate").textContent =
    `${chunks} chunk${chunks === 1 ? "" : "s"}, about ${seconds.toFixed(1)} s of speech ` +
    `(${$("text").value.length} characters; estimated in the browser)`;
}

function numberField(body, key, id) {
  const raw = $(id).value.trim();
  if (raw !== "") body[key] = Number(raw);
}

const SPEAK_FIELDS = {
  text_too_long: "text", invalid_voice: "voice", text: "text", input: "text", voice: "voice", voice_preset: "voice", seed: "seed", text_temp: "text_temp",
  waveform_temp: "waveform_temp", speed: "speed", format: "format",
};

const STREAM_OFF_FIELDS = ["seed", "text_temp", "waveform_temp", "format"];
let speechUrl = null; // the object URL of the last streamed speech, revoked when replaced

function streaming() {
  return $("stream").checked && !$("stream").disabled;
}

function syncStreamMode() {
  // Streamed timestamps take every option but the format: MediaSource plays the stream as mp3.
  for (const id of STREAM_OFF_FIELDS) $(id).disabled = streaming() && (!timestampsOn() || id === "format");
  updateEstimate();
}

function setObjectUrl(url) {
  if (speechUrl) URL.revokeObjectURL(speechUrl);
  speechUrl = url;
  return url;
}

async function speak(event) {
  event.preventDefault();
  clearErrors($("speak-form"));
  $("speak").disabled = true;
  $("download").hidden = true;
  delete $("player").dataset.durationSec;
  try {
    showTimestamps([]);
    if (timestampsOn()) await (streaming() ? speakStreamedTimed() : speakTimed());
    else await (streaming() ? speakStreamed() : speakWhole());
  } catch (err) {
    $("speak-status").textContent = "";
    showError(err, SPEAK_FIELDS, "speak-error");
  } finally {
    $("speak").disabled = false;
  }
}

/** POST /synthesize with every option; the audio plays once the whole text is made. */
async function speakWhole() {
  const body = { text: $("text").value, voice_preset: $("voice").value, format: $("format").value };
  for (const key of ["seed", "text_temp", "waveform_temp", "speed"]) numberField(body, key, key);
  $("speak-status").textContent = "Generating… the audio plays when the whole text is made.";
  const result = await api("POST", "/synthesize", body);
  const player = $("player");
  const url = await fileUrl(result.url);
  setObjectUrl(url === result.url ? null : url);
  player.src = url;
  player.dataset.durationSec = String(result.duration_sec);
  player.play().catch(() => {}); // the browser may refuse autoplay; the controls are there
  offerDownload(url, result.filename);
  $("speak-status").textContent =
    `${result.duration_sec} s of audio in ${result.chunks} chunk${result.chunks === 1 ? "" : "s"}, ` +
    `voice ${result.voice_preset}, seed ${result.seed}, made in ${result.processing_time_sec} s.`;
}

/** POST /v1/audio/speech as mp3 and feed each piece to a MediaSource: the first chunk plays while the rest is made. */
async function speakStreamed() {
  const voice = $("voice").value;
  const body = { model: "tts-1", input: $("text").value, voice, response_format: "mp3" };
  numberField(body, "speed", "speed");
  $("speak-status").textContent = "Generating the first chunk…";
  const response = await request("POST", "/v1/audio/speech", body);
  const id = response.headers.get("X-Request-Id");
  const chunks = Number(response.headers.get("X-Chunks"));
  const sink = await mp3Sink(chunks);
  for await (const piece of streamPieces(response)) await sink.append(piece);
  const parts = sink.finish();
  const player = $("player");
  const progress = await api("GET", `/v1/audio/speech/${encodeURIComponent(id)}`);
  player.dataset.durationSec = String(progress.audio_sec);
  player.dataset.requestId = id;
  const mp3 = new Blob(parts, { type: "audio/mpeg" });
  offerDownload(URL.createObjectURL(mp3), `speech-${id}.mp3`);
  $("speak-status").textContent =
    `${progress.audio_sec} s of audio in ${chunks} chunk${chunks === 1 ? "" : "s"}, voice ${voice}, ` +
    `seed ${response.headers.get("X-Seed")} (streamed).`;
}

/** Stream pieces (Uint8Array) of a response body; a broken connection is an ApiError. */
async function* streamPieces(response) {
  const reader = response.body.getReader();
  for (;;) {
    let piece;
    try {
      piece = await reader.read();
    } catch (err) {
      throw new ApiError("stream_stopped", `The stream stopped early (${err.message}); the audio so far plays.`);
    }
    if (piece.done) return;
    yield piece.value;
  }
}

/**
 * The player fed through a MediaSource as mp3 arrives: `append(bytes)` plays from the first piece on,
 * `finish()` ends the stream and returns the pieces (for the download).
 */
async function mp3Sink(chunks) {
  const source = new MediaSource();
  const player = $("player");
  player.src = setObjectUrl(URL.createObjectURL(source));
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const buffer = source.addSourceBuffer("audio/mpeg");
  const parts = [];
  return {
    async append(bytes) {
      parts.push(bytes);
      buffer.appendBuffer(bytes);
      await new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
      if (parts.length === 1) {
        player.play().catch(() => {});
        $("speak-status").textContent =
          `Playing while the rest of ${chunks} chunk${chunks === 1 ? "" : "s"} is made…`;
      }
    },
    finish() {
      if (source.readyState === "open") source.endOfStream();
      return parts;
    },
  };
}

function offerDownload(url, filename) {
  const link = $("download");
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = url;
  link.download = filename;
  link.hidden = false;
}

// ---- speak: timestamps view ----

const TIMED_TYPES = { wav: "audio/wav", mp3: "audio/mpeg", flac: "audio/flac", opus: "audio/ogg", aac: "audio/aac" };

function timestampsOn() {
  return $("timestamps").checked;
}

/** POST /v1/audio/speech with `timestamps`: the whole audio (base64) and the times of its words and sentences. */
async function speakTimed() {
  const voice = $("voice").value;
  const format = $("format").value;
  const body = { model: "tts-1", input: $("text").value, voice, response_format: format, timestamps: true };
  for (const key of ["seed", "text_temp", "waveform_temp", "speed"]) numberField(body, key, key);
  $("speak-status").textContent = "Generating… the words show when the whole text is made.";
  const result = await api("POST", "/v1/audio/speech", body);
  const bytes = Uint8Array.from(atob(result.audio), (c) => c.charCodeAt(0));
  const audio = new Blob([bytes], { type: TIMED_TYPES[format] });
  const player = $("player");
  player.src = setObjectUrl(URL.createObjectURL(audio));
  player.dataset.durationSec = String(result.duration_sec);
  // Words when the server aligned them; else its sentences, which are always timed.
  showTimestamps(result.words.length ? result.words : result.sentences);
  player.play().catch(() => {});
  offerDownload(URL.createObjectURL(audio), `speech-${result.seed}.${format}`);
  $("speak-status").textContent =
    `${result.duration_sec} s of audio in ${result.chunks} chunk${result.chunks === 1 ? "" : "s"}, voice ${voice}, ` +
    `seed ${result.seed}, ${result.words.length} timed words.` +
    (result.warnings.length ? ` Note: ${result.warnings.join(" ")}` : "");
}

/**
 * POST /v1/audio/speech as server-sent events with `timestamps`: each chunk's words come in their own
 * event just before the delta with its audio (docs/speech-api.md), so they are shown, and highlighted
 * as the player reaches them, while the rest of the text is still being made.
 */
async function speakStreamedTimed() {
  const voice = $("voice").value;
  const body = { model: "tts-1", input: $("text").value, voice, response_format: "mp3", stream_format: "sse",
    timestamps: true };
  for (const key of ["seed", "text_temp", "waveform_temp", "speed"]) numberField(body, key, key);
  $("speak-status").textContent = "Generating the first chunk…";
  const response = await request("POST", "/v1/audio/speech", body);
  const id = response.headers.get("X-Request-Id");
  const chunks = Number(response.headers.get("X-Chunks"));
  const sink = await mp3Sink(chunks);
  let done = null, words = 0;
  for await (const event of serverEvents(response)) {
    if (event.type === "speech.audio.timestamps") {
      // Words when the server aligned them; else the chunk's sentences, which are always timed.
      addTimestamps(event.words.length ? event.words : event.sentences, event.chunk);
      words += event.words.length;
      highlightSpoken();
    } else if (event.type === "speech.audio.delta") {
      await sink.append(Uint8Array.from(atob(event.audio), (c) => c.charCodeAt(0)));
    } else if (event.type === "speech.audio.done") {
      done = event;
    } else if (event.type === "error") {
      sink.finish();
      throw new ApiError(event.error.code, `${event.error.message} (the audio so far plays)`);
    }
  }
  const parts = sink.finish();
  if (!done) throw new ApiError("stream_stopped", "The stream stopped before its end; the audio so far plays.");
  const progress = await api("GET", `/v1/audio/speech/${encodeURIComponent(id)}`);
  const player = $("player");
  player.dataset.durationSec = String(progress.audio_sec);
  player.dataset.requestId = id;
  offerDownload(URL.createObjectURL(new Blob(parts, { type: "audio/mpeg" })), `speech-${id}.mp3`);
  const warnings = done.timestamps ? done.timestamps.warnings : [];
  $("speak-status").textContent =
    `${progress.audio_sec} s of audio in ${chunks} chunk${chunks === 1 ? "" : "s"}, voice ${voice}, ` +
    `seed ${response.headers.get("X-Seed")}, ${words} timed words (streamed).` +
    (warnings.length ? ` Note: ${warnings.join(" ")}` : "");
}

/** The JSON events of a text/event-stream response, as they arrive (`data:` lines; blank line ends one). */
async function* serverEvents(response) {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const piece of streamPieces(response)) {
    pending += decoder.decode(piece, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = pending.indexOf("\n\n")) >= 0) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim());
      if (data.length) yield JSON.parse(data.join("\n"));
    }
  }
}

/** Show `items` ({text, start, end}) as spans under the player; empty hides the view. */
function showTimestamps(items) {
  $("timestamps-view").replaceChildren();
  addTimestamps(items);
}

/** Add `items` ({text, start, end}, of stream chunk `chunk` when streamed) after the spans shown. */
function addTimestamps(items, chunk) {
  const view = $("timestamps-view");
  for (const item of items) {
    const span = document.createElement("span");
    span.textContent = item.text;
    span.dataset.start = String(item.start);
    span.dataset.end = String(item.end);
    if (chunk !== undefined) span.dataset.chunk = String(chunk);
    if (view.childElementCount) view.append(" ");
    view.append(span);
  }
  view.hidden = view.childElementCount === 0;
}

/** Highlight the word (or sentence) the player is at; the player's timeupdate and seeked events call it. */
function highlightSpoken() {
  const at = $("player").currentTime;
  for (const span of $("timestamps-view").querySelectorAll("span")) {
    const spoken = Number(span.dataset.start) <= at && at < Number(span.dataset.end);
    span.classList.toggle("spoken", spoken);
    if (spoken) span.setAttribute("aria-current", "true");
    else span.removeAttribute("aria-current");
  }
}

// ---- clone ----

let recorded = null; // a WAV Blob from the microphone, used when no file is chosen
let recorder = null;

/** 16-bit mono WAV of an AudioBuffer: Chrome records only WebM, which the server does not read. */
function wavBlob(buffer) {
  const samples = buffer.getChannelData(0);
  const data = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, s) => [...s].forEach((c, i) => data.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  data.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVEfmt ");
  data.setUint32(16, 16, true);
  data.setUint16(20, 1, true);
  data.setUint16(22, 1, true);
  data.setUint32(24, buffer.sampleRate, true);
  data.setUint32(28, buffer.sampleRate * 2, true);
  data.setUint16(32, 2, true);
  data.setUint16(34, 16, true);
  text(36, "data");
  data.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => data.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x)) * 0x7fff, true));
  return new Blob([data], { type: "audio/wav" });
}

async function toggleRecording() {
  const button = $("record");
  if (recorder) {
    recorder.stop();
    return;
  }
  $("clone-file-error").textContent = "";
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    $("clone-file-error").textContent = `The microphone is not available (${err.message}); upload a file instead.`;
    return;
  }
  const parts = [];
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (e) => parts.push(e.data));
  recorder.addEventListener("stop", async () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    button.textContent = "Record";
    button.setAttribute("aria-pressed", "false");
    try {
      const context = new AudioContext();
      const audio = await context.decodeAudioData(await new Blob(parts).arrayBuffer());
      context.close();
      recorded = wavBlob(audio);
      $("clone-file").value = "";
      $("clone-preview").src = URL.createObjectURL(recorded);
      $("clone-preview").hidden = false;
      $("record-status").textContent = `Recorded ${audio.duration.toFixed(1)} s.`;
    } catch (err) {
      $("clone-file-error").textContent = `The recording could not be read (${err.message}).`;
    }
  });
  recorder.start();
  button.textContent = "Stop recording";
  button.setAttribute("aria-pressed", "true");
  $("record-status").textContent = "Recording…";
}

const CLONE_FIELDS = {
  invalid_audio: "clone-file", unsupported_audio_format: "clone-file", audio_too_large: "clone-file",
  invalid_voice: "clone-name", voice_exists: "clone-name",
};

async function createVoice(event) {
  event.preventDefault();
  const form = $("clone-form");
  clearErrors(form);
  const file = $("clone-file").files[0];
  const name = $("clone-name").value.trim();
  if (!file && !recorded) {
    $("clone-file-error").textContent = "Choose a recording file or record one first.";
    return;
  }
  const data = new FormData();
  data.append("file", file || recorded, file ? file.name : "recording.wav");
  data.append("name", name);
  data.append("consent", "true"); // the button is enabled only once the consent box is ticked
  $("clone-create").disabled = true;
  $("clone-status").textContent = "Creating the voice…";
  try {
    const { voice } = await api("POST", "/voices", data);
    $("clone-status").textContent =
      `Voice ${voice.name} created from ${voice.duration_sec} s of sound.` +
      (voice.notes.length ? ` Note: ${voice.notes.join(" ")}` : "");
    await loadVoices(voice.name);
    $("clone-try").hidden = false;
    $("clone-try").dataset.voice = voice.name;
    $("clone-speak").focus();
  } catch (err) {
    $("clone-status").textContent = "";
    showError(err, CLONE_FIELDS, "clone-error");
  } finally {
    $("clone-create").disabled = !$("consent").checked;
  }
}

async function tryVoice() {
  $("clone-try-error").textContent = "";
  $("clone-speak").disabled = true;
  try {
    const voice = $("clone-try").dataset.voice;
    const result = await api("POST", "/synthesize", { text: $("clone-text").value, voice_preset: voice });
    $("clone-player").dataset.durationSec = String(result.duration_sec);
    $("clone-player").src = await fileUrl(result.url);
    $("clone-player").play().catch(() => {});
  } catch (err) {
    reportError("clone-try-error", err);
  } finally {
    $("clone-speak").disabled = false;
  }
}

// ---- books ----

let watched = null; // the id of the job shown in the job view
let watchTimer = null;

const BOOK_FIELDS = { text_too_long: "book-file", invalid_voice: "book-voice", text: "book-file",
  invalid_book: "book-file", protected_book: "book-file", unsupported_book_format: "book-file",
  book_too_large: "book-file",
  voice_preset: "book-voice", seed: "book-seed", speed: "book-speed", chapters: "book-chapters",
  cast: "book-cast", output: "book-output", caption_words: "book-words", aligner_unavailable: "book-words" };

let castSheet = null; // the cast sheet of the latest plan, as the user edited it
let voiceList = null; // GET /voices, for the cast's voice menus

/** The book form as POST /jobs and POST /books/plan take it; null (and a message) without a file. */
function bookUpload() {
  clearErrors($("book-form"));
  const file = $("book-file").files[0];
  if (!file) {
    $("book-file-error").textContent = "Choose a book file (.epub, .pdf, .html, .md or .txt) first.";
    $("book-file").focus();
    return null;
  }
  const data = new FormData();
  data.append("file", file, file.name);
  data.append("voice_preset", $("book-voice").value);
  data.append("format", $("book-format").value);
  for (const [key, id] of [["seed", "book-seed"], ["speed", "book-speed"], ["chapters", "book-chapters"]]) {
    if ($(id).value.trim() !== "") data.append(key, $(id).value.trim());
  }
  if ($("book-output").value !== "") data.append("output", $("book-output").value); // else the server's default
  if ($("book-words").checked) data.append("caption_words", "true");
  // A full cast: the edited sheet once a plan has made one, else "auto" (the server makes it).
  if ($("book-cast").value === "auto") data.append("cast", castSheet ? JSON.stringify(castSheet) : "auto");
  return data;
}

/** Show the cast sheet as a table whose voices and aliases the user edits (into castSheet). */
function renderCast(sheet) {
  castSheet = sheet;
  $("book-cast-view").hidden = !sheet;
  if (!sheet) return;
  $("book-cast-table").tBodies[0].replaceChildren(...sheet.speakers.map((speaker, k) => {
    const row = document.createElement("tr");
    for (const value of [speaker.name, speaker.lines, speaker.gender || ""]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    const voice = document.createElement("select");
    voice.id = `cast-voice-${k}`;
    voice.setAttribute("aria-label", `Voice of ${speaker.name}`);
    if (voiceList) fillVoices(voice, voiceList, speaker.voice || voiceList.default);
    voice.prepend(new Option("the narrator's", "narrator"));
    voice.value = speaker.voice || "narrator";
    voice.addEventListener("change", () => { speaker.voice = voice.value === "narrator" ? null : voice.value; });
    const aliases = document.createElement("input");
    aliases.id = `cast-aliases-${k}`;
    aliases.type = "text";
    aliases.value = (speaker.aliases || []).join(", ");
    aliases.setAttribute("aria-label", `Other names of ${speaker.name}`);
    aliases.addEventListener("change", () => {
      speaker.aliases = aliases.value.split(",").map((a) => a.trim()).filter(Boolean);
    });
    for (const control of [voice, aliases]) {
      const cell = document.createElement("td");
      cell.append(control);
      row.append(cell);
    }
    return row;
  }));
}

let planned = 0; // the latest plan asked for: an older answer that comes later is not shown

/** Ask the server for the book's plan (chapters, words, chunks, voices, warnings) and show it. */
async function planBook() {
  const data = bookUpload();
  const ask = ++planned;
  $("book-plan").hidden = true;
  if (!data) return;
  $("book-plan-status").textContent = "Reading the book…";
  try {
    const plan = await api("POST", "/books/plan", data);
    if (ask === planned) renderPlan(plan);
  } catch (err) {
    if (ask === planned) showError(err, BOOK_FIELDS, "book-error");
  } finally {
    if (ask === planned) $("book-plan-status").textContent = "";
  }
}

function renderPlan(plan) {
  $("book-plan-title").textContent = plan.title + (plan.author ? ` (${plan.author})` : "");
  const minutes = Math.max(1, Math.round(plan.estimated_seconds / 60));
  $("book-plan-summary").textContent = `${plan.chapters.length} chapters, ${plan.chunks} chunks, about ` +
    `${minutes} min of audio; language ${plan.language || "unknown"}, voice ${plan.voice}.`;
  $("book-plan-warnings").replaceChildren(...plan.warnings.map((w) => {
    const li = document.createElement("li");
    li.textContent = w;
    return li;
  }));
  $("book-plan-table").tBodies[0].replaceChildren(...plan.chapters.map((c) => {
    const row = document.createElement("tr");
    const first = c.first_words + (c.flags.length ? ` [${c.flags.join("; ")}]` : "");
    for (const value of [c.number, c.title, c.words, c.chunks, c.voices.join(", "), first]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    return row;
  }));
  renderCast(plan.cast);
  $("book-plan").hidden = false;
}

async function startJob(event) {
  event.preventDefault();
  const data = bookUpload();
  if (!data) return;
  $("book-start").disabled = true;
  try {
    const job = await api("POST", "/jobs", data);
    watchJob(job.id);
    refreshJobs();
  } catch (err) {
    showError(err, BOOK_FIELDS, "book-error");
  } finally {
    $("book-start").disabled = false;
  }
}

function watchJob(id) {
  watched = id;
  clearTimeout(watchTimer);
  $("job-view").hidden = false;
  $("job-id").textContent = id;
  $("job-chunks").replaceChildren();
  $("job-chunks").dataset.done = "-1";
  $("job-download").hidden = true;
  pollJob(id);
}

async function pollJob(id) {
  if (id !== watched) return;
  let job;
  try {
    job = await api("GET", `/jobs/${encodeURIComponent(id)}`);
    if (String(job.chunks_done) !== $("job-chunks").dataset.done || FINAL_STATES.has(job.state)) {
      const { chunks } = await api("GET", `/jobs/${encodeURIComponent(id)}/chunks`);
      renderChunks(chunks);
      $("job-chunks").dataset.done = String(job.chunks_done);
    }
  } catch (err) {
    reportError("book-error", err);
    watchTimer = setTimeout(() => pollJob(id), POLL_MS * 3);
    return;
  }
  if (id !== watched) return;
  renderJob(job);
  if (FINAL_STATES.has(job.state)) refreshJobs();
  else watchTimer = setTimeout(() => pollJob(id), POLL_MS);
}

function renderJob(job) {
  $("job-state").textContent = job.state;
  $("job-state").dataset.state = job.state;
  const eta = job.eta_sec != null ? `, about ${Math.round(job.eta_sec)} s left` : "";
  $("job-summary").textContent =
    `${job.chunks_done} of ${job.chunks_total} chunks, ${job.audio_sec.toFixed(1)} s of audio${eta}` +
    (job.error ? `. Error: ${job.error}` : "");
  $("job-progress").max = Math.max(job.chunks_total, 1);
  $("job-progress").value = job.chunks_done;
  if (job.audio_url) {
    // A book job's audio is an .m4b audiobook, a zip of chapter files, a read-along .epub, or one file in its format.
    const output = job.book ? job.book.output : "single";
    const extension = output === "single" ? job.format : output === "epub3" ? "epub" : output;
    linkFile($("job-download"), job.audio_url, `job-${job.id}.${extension}`);
    $("job-download").hidden = false;
  }
}

function renderChunks(chunks) {
  $("job-chunks").replaceChildren(...chunks.map((chunk) => {
    const item = document.createElement("li");
    item.className = chunk.done ? "done" : "";
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.textContent = chunk.done ? "done" : "waiting";
    item.append(mark, document.createTextNode(" " + chunk.text));
    return item;
  }));
}

async function refreshJobs() {
  $("jobs-error").textContent = "";
  let page;
  try {
    page = await api("GET", "/jobs?limit=20");
  } catch (err) {
    reportError("jobs-error", err);
    return;
  }
  const rows = page.jobs.map((job) => {
    const row = document.createElement("tr");
    const cell = (content) => {
      const td = document.createElement("td");
      td.append(content);
      row.append(td);
      return td;
    };
    const open = document.createElement("button");
    open.type = "button";
    open.className = "link";
    open.textContent = job.id.slice(0, 8);
    open.setAttribute("aria-label", `Show job ${job.id}`);
    open.addEventListener("click", () => watchJob(job.id));
    cell(open);
    cell(job.state).dataset.state = job.state;
    cell(`${job.chunks_done}/${job.chunks_total}`);
    cell(`${job.audio_sec.toFixed(1)} s`);
    const actions = cell("");
    if (job.audio_url) {
      const link = Object.assign(document.createElement("a"), { textContent: "Download" });
      linkFile(link, job.audio_url, `job-${job.id}.${job.format}`);
      actions.append(link);
    } else if (!FINAL_STATES.has(job.state)) {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `Cancel job ${job.id}`);
      cancel.addEventListener("click", async () => {
        try {
          await api("DELETE", `/jobs/${encodeURIComponent(job.id)}`);
        } catch (err) {
          reportError("jobs-error", err);
        }
        refreshJobs();
        if (watched === job.id) pollJob(job.id);
      });
      actions.append(cancel);
    }
    return row;
  });
  $("jobs-table").tBodies[0].replaceChildren(...rows);
}

// ---- eval ----

function openReport() {
  const file = $("eval-file").files[0];
  $("eval-error").textContent = "";
  if (!file) return;
  if (!/\.html?$/i.test(file.name)) {
    $("eval-error").textContent = "Choose the report.html that barkserve eval wrote.";
    return;
  }
  file.text().then((html) => {
    $("eval-frame").srcdoc = html; // the frame is sandboxed: the report's markup shows, no script runs
    $("eval-frame").hidden = false;
  }, (err) => reportError("eval-error", err));
}

// ---- start ----

async function showHealth() {
  try {
    const health = await fetch("/health").then((r) => r.json());
    const model = health.models[health.default_model] || {};
    $("health").textContent = `Model ${health.default_model}: ${model.state || health.status}.`;
  } catch (err) {
    $("health").textContent = `The server could not be reached (${err.message}).`;
  }
}

// ---- markup: the pause button and the lexicon editor (docs/speech-api.md) ----

/** Put a `[pause:Ns]` tag at the text's cursor (or in place of the selection). */
function insertPause() {
  const seconds = Number($("pause-seconds").value);
  $("pause-seconds-error").textContent = "";
  if (!(seconds > 0 && seconds <= 10)) {
    $("pause-seconds-error").textContent = "A pause is from 0.1 to 10 seconds.";
    return;
  }
  const box = $("text");
  const tag = ` [pause:${seconds}s] `;
  const at = box.selectionStart ?? box.value.length;
  box.setRangeText(tag, at, box.selectionEnd ?? at, "end");
  box.focus();
  box.dispatchEvent(new Event("input"));
}

/** Show the key's lexicon in the editor. */
async function loadLexicon() {
  $("lexicon-error").textContent = "";
  try {
    const answer = await api("GET", "/lexicon");
    $("lexicon").value = JSON.stringify(answer.lexicon, null, 2);
    $("lexicon-status").textContent = `${answer.entries} entries (the server adds ${answer.server_entries}).`;
  } catch (err) {
    reportError("lexicon-error", err);
  }
}

/** Store the editor's lexicon as the key's (the server names a bad entry). */
async function saveLexicon(event) {
  event.preventDefault();
  $("lexicon-error").textContent = "";
  let lexicon;
  try {
    lexicon = JSON.parse($("lexicon").value || "{}");
  } catch (err) {
    $("lexicon-error").textContent = `The lexicon is not JSON: ${err.message}`;
    return;
  }
  try {
    const answer = await api("PUT", "/lexicon", { lexicon });
    $("lexicon-status").textContent = `Saved: ${answer.entries} entries.`;
  } catch (err) {
    reportError("lexicon-error", err);
  }
}

async function deleteLexicon() {
  $("lexicon-error").textContent = "";
  try {
    const answer = await api("DELETE", "/lexicon");
    $("lexicon").value = "{}";
    $("lexicon-status").textContent = answer.deleted ? "Deleted." : "There was no lexicon.";
  } catch (err) {
    reportError("lexicon-error", err);
  }
}

function setupMarkup() {
  $("insert-pause").addEventListener("click", insertPause);
  $("lexicon-load").addEventListener("click", loadLexicon);
  $("lexicon-form").addEventListener("submit", saveLexicon);
  $("lexicon-delete").addEventListener("click", deleteLexicon);
  $("lexicon-editor").addEventListener("toggle", () => { if ($("lexicon-editor").open) loadLexicon(); });
}

function start() {
  setupTabs();
  setupMarkup();
  $("text").addEventListener("input", updateEstimate);
  $("speed").addEventListener("input", updateEstimate);
  $("speak-form").addEventListener("submit", speak);
  $("consent").addEventListener("change", () => { $("clone-create").disabled = !$("consent").checked; });
  $("record").addEventListener("click", toggleRecording);
  $("clone-file").addEventListener("change", () => { recorded = null; $("clone-preview").hidden = true; });
  $("clone-form").addEventListener("submit", createVoice);
  $("clone-speak").addEventListener("click", tryVoice);
  $("book-form").addEventListener("submit", startJob);
  $("book-plan-button").addEventListener("click", planBook);
  $("book-file").addEventListener("change", () => { castSheet = null; planBook(); }); // a new book: plan at once
  $("book-cast").addEventListener("change", () => { castSheet = null; planBook(); }); // a new cast from the book
  $("jobs-refresh").addEventListener("click", refreshJobs);
  $("eval-file").addEventListener("change", openReport);
  // Streaming needs MediaSource with mp3 (not in every browser, e.g. iPhone Safari): else whole files.
  if (window.MediaSource && MediaSource.isTypeSupported("audio/mpeg")) $("stream").checked = true;
  else $("stream").disabled = true;
  $("stream").addEventListener("change", syncStreamMode);
  $("timestamps").addEventListener("change", syncStreamMode);
  $("player").addEventListener("timeupdate", highlightSpoken);
  $("player").addEventListener("seeked", highlightSpoken);
  syncStreamMode();
  if (!window.MediaRecorder || !navigator.mediaDevices) {
    $("record").disabled = true;
    $("record-status").textContent = "Recording is not available in this browser; upload a file.";
  }
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    $("voice-error").textContent = "";
    loadVoices().catch((err) => reportError("voice-error", err));
  });
  updateEstimate();
  showHealth();
  loadVoices().catch((err) => reportError("voice-error", err));
}

document.addEventListener("DOMContentLoaded", start);
