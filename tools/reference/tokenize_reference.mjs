// Encodes a corpus with the Hugging Face Rust tokenizer (npm @anush008/tokenizers, the
// `tokenizers` crate as a Node addon): the independent reference for sluice's tokenizer tests.
//
//   cd tools/reference && npm install --ignore-scripts
//   node tools/reference/tokenize_reference.mjs TOKENIZER_JSON CORPUS_JSONL OUT_JSONL
//
// Writes {"text": ..., "ids": [...]} per input line, with encode(text, addSpecialTokens=true).
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), 'package.json'));
const { Tokenizer } = require('@anush008/tokenizers');

const [tokenizerPath, corpusPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: tokenize_reference.mjs TOKENIZER_JSON CORPUS_JSONL OUT_JSONL');
  process.exit(2);
}
const tokenizer = Tokenizer.fromFile(tokenizerPath);
const lines = readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length > 0);
const out = [];
for (const line of lines) {
  const { text } = JSON.parse(line);
  const enc = await tokenizer.encode(text, null, { addSpecialTokens: true });
  out.push(JSON.stringify({ text, ids: Array.from(enc.getIds()) }));
}
writeFileSync(outPath, out.join('\n') + '\n');
console.error(`${out.length} encodings -> ${outPath}`);
