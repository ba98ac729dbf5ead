// Windows of long texts from the Hugging Face Rust tokenizer (npm @anush008/tokenizers):
// setTruncation(maxLength, {stride}) and the encoding plus its getOverflowing(), the reference
// for Tokenizer::encode_windows (--long-input chunk).
//
//   node tools/reference/window_reference.mjs TOKENIZER_JSON CORPUS_JSONL MAX_LENGTH STRIDE OUT_JSONL
//
// Writes {"windows": [[ids...], ...]} per corpus line.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), 'package.json'));
const { Tokenizer } = require('@anush008/tokenizers');

const [tokenizerPath, corpusPath, maxLength, stride, outPath] = process.argv.slice(2);
const tokenizer = Tokenizer.fromFile(tokenizerPath);
tokenizer.setTruncation(Number(maxLength), { stride: Number(stride) });
const out = [];
for (const line of readFileSync(corpusPath, 'utf8').split('\n')) {
  if (!line.trim()) continue;
  const text = JSON.parse(line).text;
  const enc = await tokenizer.encode(text, null, { addSpecialTokens: true });
  const windows = [enc, ...enc.getOverflowing()].map((e) => Array.from(e.getIds()));
  out.push(JSON.stringify({ windows }));
}
writeFileSync(outPath, out.join('\n') + '\n');
