import { parseDocument } from 'yaml';
import { SecretFormatError } from './secret-format.error';

/**
 * Parses a secret's JSON text. `JSON.parse` keeps the last of two equal keys without a word (a
 * product or a `kid` listed twice, the second replacing the first), so such a secret is refused,
 * naming the line: never the key, which may be a value pasted in the wrong place. The parser's own
 * messages can quote the input, so they are not passed on either.
 */
export function parseSecretJson(text: string, secretName: string): unknown {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new SecretFormatError(secretName, ['not valid JSON']);
  }
  // JSON is YAML: its parser reports equal keys in one object (and is only asked about that).
  const duplicate = parseDocument(text, { uniqueKeys: true }).errors.find((e) => e.code === 'DUPLICATE_KEY');
  if (duplicate) {
    const line = duplicate.linePos?.[0].line;
    throw new SecretFormatError(secretName, [
      `a key appears twice in one object${line ? ` (line ${line})` : ''}: JSON would keep the last one silently`,
    ]);
  }
  return doc;
}
