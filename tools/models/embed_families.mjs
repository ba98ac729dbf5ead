// Reference sentence embeddings from transformers.js (npm @huggingface/transformers, running the
// folder's onnx/model.onnx on onnxruntime-node) on token ids from the Hugging Face Rust tokenizer,
// for any tokenizer layout: BERT's [CLS] … [SEP], RoBERTa's and XLM-RoBERTa's <s> … </s>. The
// independent reference for the RoBERTa, XLM-RoBERTa and JinaBERT tests
// (tools/reference/embed_reference.mjs does the same for the BERT references, with transformers.js'
// tokenizer and [CLS]/[SEP] hard-wired).
//
//   (cd tools/reference && npm ci --ignore-scripts)     # the packages live there
//   node tools/models/embed_families.mjs [options] MODELS_ROOT MODEL_NAME TEXTS_JSONL OUT_PREFIX
//
// Options:
//   --batch-size N    texts per pipeline call (default 8)
//   --limit N         only the first N lines
//   --pooling P       mean (default), cls or last_token (last_token runs one text at a time, as
//                     transformers.js takes the last position, padding or not)
//   --no-normalize    leave the pooled vectors as they are
//   --tokens-name F   the token file OUT_PREFIX.json names (default OUT_PREFIX's name +
//                     .tokens.jsonl), for references that share another one's token ids
//
// Loads MODELS_ROOT/MODEL_NAME offline with the feature-extraction pipeline and embeds every
// {"text": ...} line of TEXTS_JSONL in order, in batches padded to the longest with the
// tokenizer's pad id (as sentence-transformers does). Writes
//   OUT_PREFIX.f32           N x dims little-endian float32, row-major
//   OUT_PREFIX.tokens.jsonl  {"id": line, "ids": [...], "untruncated": n}: the ids fed to the model
//                            and the length without truncation
//   OUT_PREFIX.json          what was run: model, sha256 of its weights and ONNX file, counts, versions
//
// The token ids come from the Hugging Face Rust tokenizer (npm @anush008/tokenizers, the
// `tokenizers` crate) with setTruncation(max_seq_length) (sentence_bert_config.json): exactly what
// sentence-transformers feeds the model (Hugging Face tokenizers' truncation of a single
// sequence keeps the post-processor's special tokens). transformers.js' own tokenizers are not
// used: its Unigram tokenizer differs from the Rust one on some emoji sequences, and its
// pipeline would truncate at tokenizer_config.json's model_max_length by cutting the id list.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const packages = join(here, '..', 'reference');
const require = createRequire(join(packages, 'package.json'));
const { env, pipeline, Tensor } = require('@huggingface/transformers');
const { Tokenizer: RustTokenizer } = require('@anush008/tokenizers');

const args = process.argv.slice(2);
let batchSize = 8;
let limit = Infinity;
let pooling = 'mean';
let normalize = true;
let tokensName = null;
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--batch-size') batchSize = Number(args[++i]);
  else if (args[i] === '--limit') limit = Number(args[++i]);
  else if (args[i] === '--pooling') pooling = args[++i];
  else if (args[i] === '--no-normalize') normalize = false;
  else if (args[i] === '--tokens-name') tokensName = args[++i];
  else files.push(args[i]);
}
if (!['mean', 'cls', 'last_token'].includes(pooling)) {
  console.error(`unknown pooling ${pooling}`);
  process.exit(2);
}
if (pooling === 'last_token') batchSize = 1;
const [modelsRoot, modelName, textsPath, outPrefix] = files;
if (!outPrefix) {
  console.error('usage: embed_families.mjs [--batch-size N] [--limit N] [--pooling P] [--no-normalize] [--tokens-name F] MODELS_ROOT MODEL_NAME TEXTS_JSONL OUT_PREFIX');
  process.exit(2);
}
const modelDir = join(resolve(modelsRoot), modelName);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = resolve(modelsRoot) + '/';

const extractor = await pipeline('feature-extraction', modelName, { dtype: 'fp32', device: 'cpu' });
const maxSeqLength = JSON.parse(readFileSync(join(modelDir, 'sentence_bert_config.json'), 'utf8')).max_seq_length;
const pad = extractor.tokenizer.pad_token_id;

const rustFull = RustTokenizer.fromFile(join(modelDir, 'tokenizer.json'));
const rust = RustTokenizer.fromFile(join(modelDir, 'tokenizer.json'));
rust.setTruncation(maxSeqLength);

const records = readFileSync(textsPath, 'utf8').split('\n').filter((l) => l.length > 0).slice(0, limit).map((l) => JSON.parse(l));
const encodings = [];
for (const r of records) {
  const ids = Array.from((await rust.encode(r.text, null, { addSpecialTokens: true })).getIds());
  const untruncated = (await rustFull.encode(r.text, null, { addSpecialTokens: true })).getIds().length;
  encodings.push({ ids, untruncated });
}

// The pipeline's tokenizer call, with sentence-transformers' truncation.
let batchEncodings = null;
extractor.tokenizer = (texts) => {
  const encs = batchEncodings;
  if (encs.length !== texts.length) throw new Error('batch mismatch');
  const len = Math.max(...encs.map((e) => e.ids.length));
  const ids = new BigInt64Array(encs.length * len).fill(BigInt(pad));
  const mask = new BigInt64Array(encs.length * len);
  const types = new BigInt64Array(encs.length * len);
  encs.forEach((e, b) => {
    e.ids.forEach((v, k) => {
      ids[b * len + k] = BigInt(v);
      mask[b * len + k] = 1n;
    });
  });
  const dims = [encs.length, len];
  return {
    input_ids: new Tensor('int64', ids, dims),
    attention_mask: new Tensor('int64', mask, dims),
    token_type_ids: new Tensor('int64', types, dims),
  };
};

let dims = 0;
const chunks = [];
for (let b = 0; b < records.length; b += batchSize) {
  const batch = records.slice(b, b + batchSize);
  batchEncodings = encodings.slice(b, b + batchSize);
  const out = await extractor(batch.map((r) => r.text), { pooling, normalize });
  dims = out.dims[1];
  if (out.dims[0] !== batch.length || out.type !== 'float32') throw new Error(`unexpected output ${out.dims} ${out.type}`);
  chunks.push(Float32Array.from(out.data));
}
const all = new Float32Array(records.length * dims);
let at = 0;
for (const c of chunks) {
  all.set(c, at);
  at += c.length;
}
writeFileSync(`${outPrefix}.f32`, Buffer.from(all.buffer)); // little-endian on every Node platform we run

writeFileSync(
  `${outPrefix}.tokens.jsonl`,
  encodings.map((e, i) => JSON.stringify({ id: i, ids: e.ids, untruncated: e.untruncated })).join('\n') + '\n',
);

const sha256 = (p) => createHash('sha256').update(readFileSync(p)).digest('hex');
const pkg = (name) => JSON.parse(readFileSync(join(packages, 'node_modules', name, 'package.json'), 'utf8')).version;
const truncated = encodings.filter((e) => e.untruncated > maxSeqLength).length;
const longest = Math.max(...encodings.map((e) => e.ids.length));
const meta = {
  model: modelName,
  model_safetensors_sha256: sha256(join(modelDir, 'model.safetensors')),
  model_onnx_sha256: sha256(join(modelDir, 'onnx', 'model.onnx')),
  texts: textsPath.split('/').pop(),
  texts_sha256: sha256(textsPath),
  tokens: tokensName ?? `${outPrefix.split('/').pop()}.tokens.jsonl`,
  records: records.length,
  dimensions: dims,
  max_seq_length: maxSeqLength,
  truncated,
  longest,
  batch_size: batchSize,
  pooling,
  normalize,
  transformers_js: pkg('@huggingface/transformers'),
  onnxruntime_node: pkg('onnxruntime-node'),
  tokenizers_rust_npm: pkg('@anush008/tokenizers'),
};
writeFileSync(`${outPrefix}.json`, JSON.stringify(meta, null, 2) + '\n');
console.error(`${records.length} embeddings of ${dims} dims (${truncated} truncated to ${maxSeqLength}, longest ${longest}) -> ${outPrefix}.f32`);
