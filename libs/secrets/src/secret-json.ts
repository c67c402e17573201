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
  const at = duplicateKeyAt(text);
  if (at)
    throw new SecretFormatError(secretName, [
      `a key appears twice in one object (line ${at.line}, column ${at.column}): JSON would keep the last one silently`,
    ]);
  return doc;
}

/**
 * Where the first key that repeats an earlier key of its object starts (line and column of its
 * opening quote, from 1), in JSON text that `JSON.parse` has accepted; undefined when there is
 * none. The column matters: a secret is often one minified line of a megabyte, where "line 1" says
 * nothing. Keys are compared as `JSON.parse`
 * reads them (`"a"` and `"\u0061"` are one key). One pass over the text, each object's keys in a
 * Set: a 1,000-product secret is read at boot and on every rotation, on the event loop, and YAML's
 * duplicate check (which this replaced) compares each key with every earlier one of its object.
 */
export function duplicateKeyAt(text: string): { line: number; column: number } | undefined {
  /** One entry per open object (its keys) or array (null). */
  const open: Array<Set<string> | null> = [];
  let line = 1;
  /** Where the current line starts. */
  let lineStart = 0;
  /** Whether the next string in the innermost object is a key: after `{` or its `,`. */
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      line++;
      lineStart = i + 1;
    } else if (c === 0x7b /* { */) {
      open.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      open.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      open.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) expectKey = open[open.length - 1] != null;
    else if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          i++;
          escaped = true;
        } else if (d === 0x22) break;
      }
      if (!expectKey) continue;
      expectKey = false;
      const raw = text.slice(start + 1, i);
      const key = escaped ? (JSON.parse(text.slice(start, i + 1)) as string) : raw;
      const keys = open[open.length - 1] as Set<string>;
      if (keys.has(key)) return { line, column: start - lineStart + 1 };
      keys.add(key);
    }
  }
  return undefined;
}
