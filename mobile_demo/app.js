// The gendistill student on the device: sentencepiece (wasm) + onnxruntime-web (wasm), no server work.
// Everything here must reproduce the Python input path exactly (runtime/preprocess.py StudentInput,
// which training uses too); the bundle's golden.jsonl is the arbiter, and
// tests/test_browser.py checks every golden text through window.gendistill.
import * as ort from './vendor/ort/ort.wasm.min.mjs';
import { SentencePieceProcessor } from './vendor/sentencepiece.js';

const BUNDLE = new URL('./bundle/', location.href);
const RECENT = 50; // latencies kept for the median shown on screen

// Code points that today's browsers lowercase but Python 3.11's str.lower() (Unicode 14) leaves alone:
// letters given case mappings in Unicode 16 and 17. The test compares every code point with Python.
const NEWER_THAN_PYTHON = /[\u1C89\uA7CB\uA7CC\uA7CE\uA7D2\uA7D4\uA7DA\uA7DC\u{10D50}-\u{10D65}\u{16EA0}-\u{16EB8}]/u;
const NOT_NEWER = /[^\u1C89\uA7CB\uA7CC\uA7CE\uA7D2\uA7D4\uA7DA\uA7DC\u{10D50}-\u{10D65}\u{16EA0}-\u{16EB8}]+/gu;

/** Python's str.lower(): JS toLowerCase() (same full mappings and final-sigma rule), minus newer letters. */
export function pythonLower(text) {
  return NEWER_THAN_PYTHON.test(text) ? text.replace(NOT_NEWER, (run) => run.toLowerCase()) : text.toLowerCase();
}

/** runtime/preprocess.py normalize(): lowercase, then ASCII digits to 0 (Python's [0-9], not \d in Unicode). */
export function normalize(text, { lowercase, digits_to_zero: digitsToZero }) {
  if (lowercase) text = pythonLower(text);
  if (digitsToZero) text = text.replace(/[0-9]/g, '0');
  return text;
}

class Student {
  static async load() {
    const manifest = await fetchOk('bundle.json').then((r) => r.json());
    const [modelBytes, tokenizerBytes] = await Promise.all(
      ['model.onnx', 'tokenizer.model'].map((name) => fetchOk(name).then((r) => r.arrayBuffer())));

    const sp = new SentencePieceProcessor();
    // The library's own loaders read a file path (Node) or base64 (Node's Buffer); its private
    // _loadModel takes the .model bytes as they are, which is all a browser has.
    await sp._loadModel(new Uint8Array(tokenizerBytes));

    ort.env.wasm.wasmPaths = new URL('./vendor/ort/', location.href).href;
    // One thread: for a model this small, extra threads cost more in hand-offs than they save (measured).
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create(new Uint8Array(modelBytes), {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
    });
    return new Student(manifest, sp, session, modelBytes.byteLength);
  }

  constructor(manifest, sp, session, modelBytes) {
    this.manifest = manifest;
    this.labels = manifest.labels;
    this.pre = manifest.preprocessing;
    this.sp = sp;
    this.session = session;
    this.modelBytes = modelBytes;
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
    this.queue = Promise.resolve(); // onnxruntime-web runs one session.run at a time
  }

  /** Unpadded ids, truncated to max_length: golden.jsonl's "ids". */
  tokenize(text) {
    return this.sp.encodeIds(normalize(text, this.pre)).slice(0, this.pre.max_length);
  }

  /** Batch of one, padded to min_length (the widest conv kernel) with pad_id, as int64. */
  inputTensor(ids) {
    const data = new BigInt64Array(Math.max(this.pre.min_length, ids.length)).fill(BigInt(this.pre.pad_id));
    ids.forEach((id, i) => { data[i] = BigInt(id); });
    return new ort.Tensor('int64', data, [1, data.length]);
  }

  /** Tokenize + infer one text; the timing covers exactly that, the latency a user waits for. */
  predict(text) {
    const run = this.queue.then(async () => {
      const t0 = performance.now();
      const ids = this.tokenize(text);
      const t1 = performance.now();
      const outputs = await this.session.run({ [this.inputName]: this.inputTensor(ids) });
      const t2 = performance.now();
      const logits = Array.from(outputs[this.outputName].data);
      const probabilities = softmax(logits);
      const best = probabilities.indexOf(Math.max(...probabilities));
      return { text, ids, logits, probabilities, label: this.labels[best], ms: { tokenize: t1 - t0, infer: t2 - t1, total: t2 - t0 } };
    });
    this.queue = run.catch(() => {});
    return run;
  }
}

function softmax(logits) {
  const top = Math.max(...logits);
  const exps = logits.map((x) => Math.exp(x - top));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((x) => x / sum);
}

async function fetchOk(name) {
  const response = await fetch(new URL(name, BUNDLE));
  if (!response.ok) throw new Error(`Could not load the bundle's ${name} (HTTP ${response.status}).`);
  return response;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const formatMs = (ms) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(0));

// ---- UI -------------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const latencies = [];

function setStatus(text, state) {
  $('status').textContent = text;
  document.body.dataset.state = state;
}

function renderBars(labels) {
  $('bars').replaceChildren(...labels.map((label) => {
    const item = document.createElement('li');
    item.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value">—</span>';
    item.querySelector('.name').textContent = label;
    return item;
  }));
}

function showResult(result) {
  const items = $('bars').children;
  const best = result.probabilities.indexOf(Math.max(...result.probabilities));
  result.probabilities.forEach((p, i) => {
    items[i].classList.toggle('top', i === best);
    items[i].querySelector('.fill').style.width = `${(p * 100).toFixed(1)}%`;
    items[i].querySelector('.value').textContent = `${(p * 100).toFixed(1)}%`;
  });
  $('label').textContent = result.label;
  $('confidence').textContent = `${(result.probabilities[best] * 100).toFixed(0)}% sure`;
  latencies.push(result.ms.total);
  if (latencies.length > RECENT) latencies.shift();
  $('latency').textContent = formatMs(result.ms.total);
  $('median').textContent = formatMs(median(latencies));
  $('runs').textContent = String(latencies.length);
  $('tokens').textContent = String(result.ids.length);
  document.body.dataset.state = 'predicted';
}

function clearResult() {
  $('label').textContent = '—';
  $('confidence').textContent = '';
  for (const item of $('bars').children) {
    item.classList.remove('top');
    item.querySelector('.fill').style.width = '0%';
    item.querySelector('.value').textContent = '—';
  }
  document.body.dataset.state = 'ready';
}

function wireInput(student) {
  const input = $('text');
  // Predict on every keystroke, but never queue stale texts: at most one run waits behind the current one.
  let running = false;
  let latest = null;
  async function update() {
    latest = input.value;
    if (running) return;
    running = true;
    while (latest !== null) {
      const text = latest;
      latest = null;
      if (text.trim() === '') clearResult();
      else showResult(await student.predict(text));
    }
    running = false;
  }
  input.addEventListener('input', update);
  // Real test texts the shipped model classifies correctly, one per label (bundle.json "examples").
  const examples = student.manifest.examples ?? [];
  $('examples').replaceChildren(...examples.map((text) => {
    const chip = document.createElement('button');
    chip.type = 'button';
    chip.className = 'chip';
    chip.textContent = text;
    chip.addEventListener('click', () => { input.value = text; update(); input.focus(); });
    return chip;
  }));
  input.disabled = false;
}

function showModelInfo(student) {
  const rows = {
    Labels: student.labels.join(', '),
    Model: `${student.manifest.model?.precision ?? 'int8'} ONNX · ${Math.round(student.modelBytes / 1024)} KB`,
    Runtime: 'onnxruntime-web · wasm · 1 thread',
    Timer: crossOriginIsolated ? 'cross-origin isolated (fine)' : 'not isolated (coarse)',
  };
  $('model-info').replaceChildren(...Object.entries(rows).flatMap(([key, value]) => {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = key;
    dd.textContent = value;
    return [dt, dd];
  }));
}

async function registerOffline() {
  if (!('serviceWorker' in navigator)) return false;
  await navigator.serviceWorker.register('./sw.js');
  await navigator.serviceWorker.ready; // installed: app, wasm and bundle are cached
  return true;
}

async function main() {
  const student = await Student.load();
  showModelInfo(student);
  renderBars(student.labels);
  wireInput(student);
  setStatus('Ready', 'ready');
  registerOffline()
    .then((ok) => { if (ok) $('status').textContent = 'Ready · offline'; })
    .catch((err) => console.warn('Offline cache unavailable:', err));
  return student;
}

const loaded = main().catch((err) => {
  setStatus('Failed to load', 'error');
  $('model-info').textContent = String(err && err.message ? err.message : err); // say why, on the phone
  throw err;
});

// Test hook (tests/test_browser.py): the same code paths the UI uses.
window.gendistill = {
  ready: loaded.then(() => true),
  normalize: async (text) => normalize(text, (await loaded).pre),
  tokenize: async (text) => (await loaded).tokenize(text),
  predict: async (text) => (await loaded).predict(text),
  /** Changed code points under the bundle's normalisation, for the exhaustive lowercase check. */
  changedCodePoints: async () => {
    const pre = (await loaded).pre;
    const changed = {};
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue; // lone surrogates are not text
      const ch = String.fromCodePoint(cp);
      const out = normalize(ch, pre);
      if (out !== ch) changed[cp] = out;
    }
    return changed;
  },
  /** Median batch-1 latency (tokenize + infer) over `runs` predictions, after `warmup` unmeasured ones. */
  benchmark: async (text, runs = 200, warmup = 20) => {
    const student = await loaded;
    const totals = [], infers = [], tokenizes = [];
    for (let i = 0; i < warmup + runs; i++) {
      const { ms } = await student.predict(text);
      if (i >= warmup) { totals.push(ms.total); infers.push(ms.infer); tokenizes.push(ms.tokenize); }
    }
    return { runs, total_ms: median(totals), infer_ms: median(infers), tokenize_ms: median(tokenizes), cross_origin_isolated: crossOriginIsolated };
  },
  latencies: () => ({ last_ms: latencies.at(-1) ?? null, median_ms: latencies.length ? median(latencies) : null, runs: latencies.length }),
  offline: () => navigator.serviceWorker?.ready.then(() => true) ?? Promise.resolve(false),
};
