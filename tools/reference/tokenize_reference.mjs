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
//   --limit N         only the first N lines of the corpus
//   --max-length N    setTruncation(N) first (longest_first, right, special tokens included)
//   --no-special      encode with addSpecialTokens=false
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), 'package.json'));
const { Tokenizer } = require('@anush008/tokenizers');

const args = process.argv.slice(2);
const opts = { full: false, limit: Infinity, maxLength: null, special: true };
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--full') opts.full = true;
  else if (args[i] === '--limit') opts.limit = Number(args[++i]);
  else if (args[i] === '--max-length') opts.maxLength = Number(args[++i]);
  else if (args[i] === '--no-special') opts.special = false;
  else files.push(args[i]);
}
const [tokenizerPath, corpusPath, outPath] = files;
if (!outPath) {
  console.error('usage: tokenize_reference.mjs [--full] [--limit N] [--max-length N] [--no-special] ' +
                'TOKENIZER_JSON CORPUS_JSONL OUT_JSONL');
  process.exit(2);
}
const tokenizer = Tokenizer.fromFile(tokenizerPath);
if (opts.maxLength !== null) tokenizer.setTruncation(opts.maxLength);
const lines = readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length > 0).slice(0, opts.limit);
const out = [];
for (const line of lines) {
  const { text } = JSON.parse(line);
  const enc = await tokenizer.encode(text, null, { addSpecialTokens: opts.special });
  const rec = { text, ids: Array.from(enc.getIds()) };
  if (opts.full) {
    rec.type_ids = Array.from(enc.getTypeIds());
    rec.offsets = enc.getOffsets().map((o) => [o[0], o[1]]);
  }
  out.push(JSON.stringify(rec));
}
writeFileSync(outPath, out.join('\n') + '\n');
console.error(`${out.length} encodings -> ${outPath}`);
