// Offline support: once the page has loaded, the app, the wasm runtimes and the bundle are all in a
// cache, so the classifier keeps working with the network off (airplane mode, server stopped).
//
// Network first, cache as fallback: a re-exported bundle served at the same URLs replaces the cached
// one on the next online visit, and offline visits get the last one seen.
const CACHE = 'gendistill-demo-v1';
const FILES = [
  './', './index.html', './app.js', './style.css', './manifest.webmanifest', './icon.svg',
  './shims/fs.js', './shims/buffer.js',
  './vendor/sentencepiece.js', './vendor/ort/ort.wasm.min.mjs',
  './vendor/ort/ort-wasm-simd-threaded.mjs', './vendor/ort/ort-wasm-simd-threaded.wasm',
  './bundle/bundle.json', './bundle/model.onnx', './bundle/tokenizer.model', './bundle/labels.json',
];

self.addEventListener('install', (event) => {
  // The first visit ran before this worker controlled the page, so fetch everything once here.
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(request);
      if (response.ok) await cache.put(request, response.clone());
      return response;
    } catch (offline) {
      const cached = await cache.match(request, { ignoreSearch: true });
      if (cached) return cached;
      throw offline;
    }
  })());
});
