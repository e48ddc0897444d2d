// @sctg/sentencepiece-js imports Node's `Buffer` only for its base64 loader, which the page does not
// use. The import map points `buffer` here so the module loads in a browser without a bundler.
export const Buffer = undefined;
export default { Buffer };
