// The peer for tools/bench/bench.py: the same JSONL job done with transformers.js
// (@huggingface/transformers, its feature-extraction pipeline on onnxruntime-node), the way its
// documentation shows: read every {"text": ...} line, embed batches of records in input order
// with { pooling: 'mean', normalize: true } (each batch padded to its longest row, truncated
// at the tokenizer's model_max_length), and write each input object back with an added
// "embedding" array, one JSON line per record, like pipeline-run embed.
//
//   node tools/bench/peer_transformers.mjs [options] MODELS_ROOT MODEL_NAME INPUT.jsonl OUTPUT.jsonl
//
// Options:
//   --batch-size N    records per extractor call (default 32)
//   --threads N       onnxruntime intra-op threads (default: every core, as pipeline-run)
//   --sort-window W   sort each window of W records by text length before batching (default 0:
//                     input order, as a plain user would write it); input order is restored
//                     before writing
//   --text-field F    the field to embed (default "text")
//
// MODELS_ROOT/MODEL_NAME holds config.json, tokenizer.json, tokenizer_config.json and
// onnx/model.onnx; bench.py prepares it (tools/models/export_onnx.py) with model_max_length
// set to the model's max_seq_length, so both programs truncate at the same length. No network:
// env.allowRemoteModels = false. Prints one JSON line to standard output: records, real and
// padded tokens (from the attention masks the model received), seconds (after the module
// import), threads, batch size, versions.
import { closeSync, createReadStream, openSync, readFileSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
// transformers.js is installed with the other reference tools (tools/reference/node_modules).
const require = createRequire(join(here, '..', 'reference', 'package.json'));
const transformersPath = require.resolve('@huggingface/transformers');
const { env, pipeline } = await import(transformersPath);

const args = process.argv.slice(2);
let batchSize = 32;
let threads = 0;
let sortWindow = 0;
let textField = 'text';
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--batch-size') batchSize = Number(args[++i]);
  else if (args[i] === '--threads') threads = Number(args[++i]);
  else if (args[i] === '--sort-window') sortWindow = Number(args[++i]);
  else if (args[i] === '--text-field') textField = args[++i];
  else files.push(args[i]);
}
const [modelsRoot, modelName, inputPath, outputPath] = files;
if (!outputPath || !(batchSize >= 1)) {
  console.error('usage: peer_transformers.mjs [--batch-size N] [--threads N] [--sort-window W] [--text-field F] ' +
                'MODELS_ROOT MODEL_NAME INPUT.jsonl OUTPUT.jsonl');
  process.exit(2);
}
if (!(threads > 0)) threads = availableParallelism();

const t0 = performance.now();
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = resolve(modelsRoot) + '/';
const extractor = await pipeline('feature-extraction', modelName, {
  dtype: 'fp32',
  device: 'cpu',
  session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
});

// Count the real and padded tokens the model is given (the pipeline's own tokenizer call).
let realTokens = 0;
let paddedTokens = 0;
const tokenizer = extractor.tokenizer;
extractor.tokenizer = (texts, options) => {
  const enc = tokenizer(texts, options);
  const mask = enc.attention_mask.data;
  let real = 0;
  for (let i = 0; i < mask.length; ++i) real += Number(mask[i]);
  realTokens += real;
  paddedTokens += mask.length;
  return enc;
};

const out = openSync(outputPath, 'w');
let records = 0;

async function embedBatch(objs) {
  const result = await extractor(objs.map((o) => o[textField]), { pooling: 'mean', normalize: true });
  const dims = result.dims[1];
  const data = result.data;
  return objs.map((o, r) => {
    o.embedding = Array.from(data.subarray(r * dims, (r + 1) * dims));
    return JSON.stringify(o);
  });
}

async function embedWindow(objs) {
  const order = objs.map((_, i) => i);
  if (sortWindow > 0) order.sort((a, b) => objs[a][textField].length - objs[b][textField].length || a - b);
  const lines = new Array(objs.length);
  for (let b = 0; b < order.length; b += batchSize) {
    const idx = order.slice(b, b + batchSize);
    const embedded = await embedBatch(idx.map((i) => objs[i]));
    idx.forEach((i, k) => { lines[i] = embedded[k]; });
  }
  writeSync(out, lines.join('\n') + '\n');
  records += objs.length;
}

const window = sortWindow > 0 ? sortWindow : batchSize;
let pending = [];
const rl = createInterface({ input: createReadStream(inputPath), crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim().length === 0) continue;
  pending.push(JSON.parse(line));
  if (pending.length === window) {
    await embedWindow(pending);
    pending = [];
  }
}
if (pending.length > 0) await embedWindow(pending);
closeSync(out);

const seconds = (performance.now() - t0) / 1000;
const pkg = (name) => JSON.parse(readFileSync(join(here, '..', 'reference', 'node_modules', name, 'package.json'), 'utf8')).version;
console.log(JSON.stringify({
  records,
  tokens: realTokens,
  padded_tokens: paddedTokens,
  seconds,
  threads,
  batch_size: batchSize,
  sort_window: sortWindow,
  max_length: tokenizer.model_max_length,
  transformers_js: pkg('@huggingface/transformers'),
  onnxruntime_node: pkg('onnxruntime-node'),
}));
