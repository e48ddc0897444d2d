// @sctg/sentencepiece-js imports Node's `fs` for its file-path loaders. The page never calls them
// (it hands the tokenizer bytes over directly), so the import map points `fs` at this empty module.
export default {};
