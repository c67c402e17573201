import { parseHmacSecrets } from './hmac-secrets.parser';
import { SecretFormatError } from './secret-format.error';

const SECRET = 'hmac-secret-value-never-printed-0123456789';

function problems(text: string): string {
  try {
    parseHmacSecrets(text, 'API_KEY_SERVER_HMAC_SECRETS');
  } catch (error) {
    expect(error).toBeInstanceOf(SecretFormatError);
    const message = (error as Error).message;
    expect(message).toContain('API_KEY_SERVER_HMAC_SECRETS');
    expect(message).not.toContain(SECRET);
    expect(message).not.toContain(SECRET.slice(0, 20));
    return message;
  }
  throw new Error('expected SecretFormatError');
}

describe('parseHmacSecrets', () => {
  it('maps each client id to its secret bytes and product', () => {
    const clients = parseHmacSecrets(
      JSON.stringify({
        'billing-batch': { secret: SECRET, product: 'product-a' },
        'ci.runner_2': { secret: SECRET + 'x', product: 'p.b' },
      }),
      'hmac',
    );
    expect([...clients.keys()]).toEqual(['billing-batch', 'ci.runner_2']);
    const client = clients.get('billing-batch')!;
    expect(client.clientId).toBe('billing-batch');
    expect(client.product).toBe('product-a');
    expect(Buffer.isBuffer(client.secret)).toBe(true);
    expect(client.secret.equals(Buffer.from(SECRET, 'utf8'))).toBe(true);
  });

  it('accepts an empty object (HMAC unused)', () => {
    expect(parseHmacSecrets('{}', 'hmac').size).toBe(0);
  });

  it('accepts a 64-character client id and a secret of exactly 32 characters', () => {
    const id = 'a'.repeat(64);
    expect(parseHmacSecrets(JSON.stringify({ [id]: { secret: 's'.repeat(32), product: 'p' } }), 'hmac').get(id)?.secret.length).toBe(32);
  });

  it('reports every problem at once', () => {
    const message = problems(JSON.stringify({ a: { secret: 'short', product: 'p' }, b: { secret: SECRET, product: '' } }));
    expect(message).toContain('a.secret: must be at least 32 characters');
    expect(message).toContain('b.product');
  });

  it.each([
    ['not json ' + SECRET, 'not valid JSON'],
    ['[]', 'must be a JSON object'],
    [JSON.stringify(SECRET), 'must be a JSON object'],
    [JSON.stringify({ c: SECRET }), 'c: must be an object'],
    [JSON.stringify({ c: null }), 'c: must be an object'],
    [JSON.stringify({ c: { product: 'p' } }), 'c.secret: must be a string'],
    [JSON.stringify({ c: { secret: 42, product: 'p' } }), 'c.secret: must be a string'],
    [JSON.stringify({ c: { secret: SECRET.slice(0, 31), product: 'p' } }), 'c.secret: must be at least 32 characters'],
    [JSON.stringify({ c: { secret: SECRET + '\n', product: 'p' } }), 'c.secret: must not start or end with whitespace'],
    [JSON.stringify({ c: { secret: SECRET } }), 'c.product'],
    [JSON.stringify({ c: { secret: SECRET, product: '' } }), 'c.product'],
    [JSON.stringify({ c: { secret: SECRET, product: '-lead' } }), 'c.product'],
    [JSON.stringify({ c: { secret: SECRET, product: 'p'.repeat(65) } }), 'c.product'],
    [JSON.stringify({ c: { secret: SECRET, product: 'p', extra: SECRET } }), 'c.extra: unknown field'],
    [JSON.stringify({ ok: { secret: SECRET, product: 'p' }, 'bad id!': { secret: SECRET, product: 'p' } }), 'client id at index 1'],
    [JSON.stringify({ ['x'.repeat(65)]: { secret: SECRET, product: 'p' } }), 'client id at index 0'],
    [JSON.stringify({ [SECRET + ' ']: { secret: SECRET, product: 'p' } }), 'client id at index 0'],
  ])('rejects %s naming the problem', (text, expected) => {
    expect(problems(text)).toContain(expected);
  });
});
