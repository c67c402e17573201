import * as yaml from 'yaml';
import { duplicateKeyAt, parseSecretJson } from './secret-json';

jest.mock('yaml', () => {
  const actual = jest.requireActual<typeof import('yaml')>('yaml');
  return { ...actual, parseDocument: jest.fn(actual.parseDocument) };
});

describe('duplicateKeyAt', () => {
  it('names the line of the key that repeats an earlier key of its object, at any depth', () => {
    expect(duplicateKeyAt('{"a": 1,\n"a": 2}')).toEqual({ line: 2, column: 1 });
    expect(duplicateKeyAt('{"p": {"providers": {\n"openai": {"api_key": "k",\n\n "api_key": "x"}}}}')).toEqual({ line: 4, column: 2 });
    expect(duplicateKeyAt('[{"a": 1}, {"b": [{"c": 1, "c": 2}]}]')).toEqual({ line: 1, column: 28 });
  });

  it('compares keys as JSON.parse reads them: an escaped spelling is the same key', () => {
    expect(duplicateKeyAt('{"a": 1, "\\u0061": 2}')).toEqual({ line: 1, column: 10 });
    expect(duplicateKeyAt('{"a\\"b": 1, "a\\u0022b": 2}')).toEqual({ line: 1, column: 13 });
    expect(duplicateKeyAt('{"a\\\\": 1, "a\\\\\\\\": 2}')).toBeUndefined();
  });

  it('takes equal keys in different objects, values equal to keys, and punctuation inside strings', () => {
    expect(duplicateKeyAt('{"a": {"x": 1}, "b": {"x": 1}}')).toBeUndefined();
    expect(duplicateKeyAt('[{"x": 1}, {"x": 2}]')).toBeUndefined();
    expect(duplicateKeyAt('{"a": "b", "b": "a", "c": ["a", "a"]}')).toBeUndefined();
    expect(duplicateKeyAt('{"a": "x,\\"b\\": {[", "b": "}]", "c": {"a": 1}}')).toBeUndefined();
    expect(duplicateKeyAt('{"__proto__": 1, "constructor": 2, "toString": 3}')).toBeUndefined();
    expect(duplicateKeyAt('{"__proto__": 1, "__proto__": 2}')).toEqual({ line: 1, column: 18 });
    expect(duplicateKeyAt('"a"')).toBeUndefined();
  });
});

describe('parseSecretJson', () => {
  it('refuses a key twice in one object, naming its line and column, never the key', () => {
    expect(() => parseSecretJson('{"sk-secret-product": 1,\n"sk-secret-product": 2}', 'openai-api-keys')).toThrow(
      /a key appears twice in one object \(line 2, column 1\): JSON would keep the last one silently/,
    );
    // A minified secret is one line: the column finds product #734 listed twice (`cut -c`).
    const products = Array.from(
      { length: 1_000 },
      (_, i) => `"product-${i}": {"providers": {"openai": {"api_key": "sk-${i}", "models": ["m"]}}}`,
    );
    products.splice(734, 0, products[5]);
    const text = `{${products.join(',')}}`;
    const column = text.indexOf('"product-5"', text.indexOf('"product-733"'));
    expect(() => parseSecretJson(text, 'openai-api-keys')).toThrow(`(line 1, column ${column + 1})`);
    expect(() => parseSecretJson('{"sk-secret-product": 1,\n"sk-secret-product": 2}', 'openai-api-keys')).not.toThrow(/sk-secret/);
    expect(() => parseSecretJson('{"a": ', 'openai-api-keys')).toThrow(/not valid JSON/);
  });

  it('checks a platform-sized secret in one pass over its text, without building a YAML document', () => {
    // YAML's duplicate check compares each key with every earlier one of its object: at 1,000
    // products of ~35 models it held the event loop ~1.4 s on every rotation (figures in the commit).
    const products = Object.fromEntries(
      Array.from({ length: 1_000 }, (_, i) => [
        `product-${i}`,
        { providers: { openai: { api_key: `sk-${i}`, models: Array.from({ length: 35 }, (_, m) => `model-${i}-${m}`) } } },
      ]),
    );
    expect(parseSecretJson(JSON.stringify(products), 'openai-api-keys')).toEqual(products);
    expect(yaml.parseDocument).not.toHaveBeenCalled();
  });
});
