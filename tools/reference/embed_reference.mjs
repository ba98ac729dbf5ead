// Reference sentence embeddings from transformers.js (npm @huggingface/transformers, running the
// model's onnx/model.onnx on onnxruntime-node): the independent reference for sluice's model tests.
//
//   cd tools/reference && npm install --ignore-scripts
//   node tools/reference/embed_reference.mjs [options] MODELS_ROOT MODEL_NAME TEXTS_JSONL OUT_PREFIX
//
// Options:
//   --batch-size N   texts per pipeline call (default 8)
//   --limit N        only the first N lines
//   --pooling P      mean (default), cls or last_token; last_token runs one text at a time, as
//                    transformers.js takes the last position, padding or not
//
// Loads MODELS_ROOT/MODEL_NAME (no network: env.allowRemoteModels = false) with the
// feature-extraction pipeline, pooling "mean" (or --pooling), normalize true, and embeds every {"text": ...}
// line of TEXTS_JSONL in order, in batches (padded to the longest, like sentence-transformers).
// Writes
//   OUT_PREFIX.f32          N x dims little-endian float32, row-major
//   OUT_PREFIX.tokens.jsonl {"id": line, "ids": [...], "untruncated": n} per line: the ids fed to the model
//   OUT_PREFIX.json         what was run: model, sha256 of model.safetensors, counts, versions
//
// Truncation as sentence-transformers does it: max_seq_length from sentence_bert_config.json,
// special tokens included, keeping the final [SEP] (Hugging Face tokenizers' truncation). The
// pipeline's own tokenizer call would truncate to tokenizer_config.json's model_max_length
// (512 for all-MiniLM-L6-v2) by cutting the id list, losing [SEP]; so the pipeline is given a
// tokenizer that truncates the sentence-transformers way, and every encoding is checked against
// the Hugging Face Rust tokenizer (npm @anush008/tokenizers) with setTruncation(max_seq_length).
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { env, pipeline, Tensor } from '@huggingface/transformers';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, 'package.json'));

const args = process.argv.slice(2);
let batchSize = 8;
let limit = Infinity;
let pooling = 'mean';
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--batch-size') batchSize = Number(args[++i]);
  else if (args[i] === '--limit') limit = Number(args[++i]);
  else if (args[i] === '--pooling') pooling = args[++i];
  else files.push(args[i]);
}
if (!['mean', 'cls', 'last_token'].includes(pooling)) {
  console.error(`unknown pooling ${pooling}`);
  process.exit(2);
}
if (pooling === 'last_token') batchSize = 1;
const [modelsRoot, modelName, textsPath, outPrefix] = files;
if (!outPrefix) {
  console.error('usage: embed_reference.mjs [--batch-size N] [--limit N] [--pooling P] MODELS_ROOT MODEL_NAME TEXTS_JSONL OUT_PREFIX');
  process.exit(2);
}
const modelDir = join(resolve(modelsRoot), modelName);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = resolve(modelsRoot) + '/';

const extractor = await pipeline('feature-extraction', modelName, { dtype: 'fp32', device: 'cpu' });
const tokenizer = extractor.tokenizer;
const maxSeqLength = JSON.parse(readFileSync(join(modelDir, 'sentence_bert_config.json'), 'utf8')).max_seq_length;
const cls = tokenizer.convert_tokens_to_ids('[CLS]');
const sep = tokenizer.convert_tokens_to_ids('[SEP]');
const pad = tokenizer.pad_token_id;

// The Hugging Face Rust tokenizer with sentence-transformers' truncation, to check against.
const { Tokenizer: RustTokenizer } = require('@anush008/tokenizers');
const rust = RustTokenizer.fromFile(join(modelDir, 'tokenizer.json'));
rust.setTruncation(maxSeqLength);

function encodeLikeSentenceTransformers(text) {
  // No padding, no truncation: the whole encoding with [CLS] ... [SEP].
  const full = tokenizer(text, { add_special_tokens: true, return_tensor: false }).input_ids;
  let ids = full;
  if (full.length > maxSeqLength) {
    if (full[0] !== cls || full[full.length - 1] !== sep) throw new Error(`unexpected special tokens in ${full}`);
    ids = full.slice(0, maxSeqLength - 1).concat([sep]);
  }
  return { ids, untruncated: full.length };
}

const records = readFileSync(textsPath, 'utf8').split('\n').filter((l) => l.length > 0).slice(0, limit).map((l) => JSON.parse(l));
const encodings = [];
let mismatches = 0;
for (const [i, r] of records.entries()) {
  const e = encodeLikeSentenceTransformers(r.text);
  const want = Array.from((await rust.encode(r.text, null, { addSpecialTokens: true })).getIds());
  if (want.length !== e.ids.length || want.some((v, k) => v !== e.ids[k])) {
    if (++mismatches <= 5) console.error(`line ${i}: transformers.js ${JSON.stringify(e.ids)} != tokenizers ${JSON.stringify(want)}`);
  }
  encodings.push(e);
}
if (mismatches > 0) {
  console.error(`${mismatches} encodings differ from the Hugging Face Rust tokenizer`);
  process.exit(1);
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
  const out = await extractor(batch.map((r) => r.text), { pooling, normalize: true });
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
const pkg = (name) => JSON.parse(readFileSync(join(here, 'node_modules', name, 'package.json'), 'utf8')).version;
const truncated = encodings.filter((e) => e.untruncated > maxSeqLength).length;
const meta = {
  model: modelName,
  model_safetensors_sha256: sha256(join(modelDir, 'model.safetensors')),
  model_onnx_sha256: sha256(join(modelDir, 'onnx', 'model.onnx')),
  texts: textsPath.split('/').pop(),
  texts_sha256: sha256(textsPath),
  records: records.length,
  dimensions: dims,
  max_seq_length: maxSeqLength,
  truncated,
  batch_size: batchSize,
  pooling,
  normalize: true,
  transformers_js: pkg('@huggingface/transformers'),
  onnxruntime_node: pkg('onnxruntime-node'),
  tokenizers_rust_npm: pkg('@anush008/tokenizers'),
};
writeFileSync(`${outPrefix}.json`, JSON.stringify(meta, null, 2) + '\n');
console.error(`${records.length} embeddings of ${dims} dims (${truncated} truncated to ${maxSeqLength}) -> ${outPrefix}.f32`);
