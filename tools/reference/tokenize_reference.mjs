// Encodes a corpus with the Hugging Face Rust tokenizer (npm @anush008/tokenizers, the
// `tokenizers` crate as a Node addon): the independent reference for sluice's tokenizer tests.
//
//   cd tools/reference && npm install --ignore-scripts
//   node tools/reference/tokenize_reference.mjs [options] TOKENIZER_JSON CORPUS_JSONL OUT_JSONL
//
// Writes {"text": ..., "ids": [...]} per input line, with encode(text, addSpecialTokens=true).
// Options:
//   --full            also "type_ids" and "offsets" ([start, end) in code points, as the
//                     Hugging Face bindings report them; special tokens [0, 0])
//   --limit N         only the first N lines of the corpus (after --stride)
//   --stride K        only every K-th line of the corpus (lines 0, K, 2K, ...), to sample all
//                     of its kinds of text in a smaller file
//   --max-length N    setTruncation(N) first (longest_first, right, special tokens included)
//   --no-special      encode with addSpecialTokens=false
//   --ids-only        write only the ids, space-separated, one line per corpus line (the line
//                     numbers match the corpus; compact for large vocabularies)
//   --override JSON   a file whose top-level keys replace those of TOKENIZER_JSON (a variant
//                     that shares the base file's vocabulary)
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), 'package.json'));
const { Tokenizer } = require('@anush008/tokenizers');

const args = process.argv.slice(2);
const opts = { full: false, limit: Infinity, stride: 1, maxLength: null, special: true, idsOnly: false,
               override: null };
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--full') opts.full = true;
  else if (args[i] === '--limit') opts.limit = Number(args[++i]);
  else if (args[i] === '--stride') opts.stride = Number(args[++i]);
  else if (args[i] === '--max-length') opts.maxLength = Number(args[++i]);
  else if (args[i] === '--no-special') opts.special = false;
  else if (args[i] === '--ids-only') opts.idsOnly = true;
  else if (args[i] === '--override') opts.override = args[++i];
  else files.push(args[i]);
}
const [tokenizerPath, corpusPath, outPath] = files;
if (!outPath) {
  console.error('usage: tokenize_reference.mjs [--full] [--limit N] [--stride K] [--max-length N] [--no-special] ' +
                '[--ids-only] [--override JSON] ' +
                'TOKENIZER_JSON CORPUS_JSONL OUT_JSONL');
  process.exit(2);
}
let tokenizer;
if (opts.override === null) {
  tokenizer = Tokenizer.fromFile(tokenizerPath);
} else {
  const doc = JSON.parse(readFileSync(tokenizerPath, 'utf8'));
  Object.assign(doc, JSON.parse(readFileSync(opts.override, 'utf8')));
  tokenizer = Tokenizer.fromString(JSON.stringify(doc));
}
if (opts.maxLength !== null) tokenizer.setTruncation(opts.maxLength);
const lines = readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length > 0)
  .filter((_, i) => i % opts.stride === 0).slice(0, opts.limit);
const out = [];
for (const line of lines) {
  const { text } = JSON.parse(line);
  const enc = await tokenizer.encode(text, null, { addSpecialTokens: opts.special });
  if (opts.idsOnly) {
    out.push(Array.from(enc.getIds()).join(' '));
    continue;
  }
  const rec = { text, ids: Array.from(enc.getIds()) };
  if (opts.full) {
    rec.type_ids = Array.from(enc.getTypeIds());
    rec.offsets = enc.getOffsets().map((o) => [o[0], o[1]]);
  }
  out.push(JSON.stringify(rec));
}
writeFileSync(outPath, out.join('\n') + '\n');
console.error(`${out.length} encodings -> ${outPath}`);
