import { createHash } from 'node:crypto';
import { endUserId, identifyAnthropicCaller, identifyCaller } from './end-user-id';

describe('endUserId', () => {
  it('is the first 32 hex digits of SHA-256 of product, newline, user: stable, per product, not the name', () => {
    const id = endUserId('demo', 'alice@example.com');
    expect(id).toBe(createHash('sha256').update('demo\nalice@example.com').digest('hex').slice(0, 32));
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(endUserId('demo', 'alice@example.com')).toBe(id);
    expect(endUserId('other', 'alice@example.com')).not.toBe(id);
    expect(endUserId('demo', 'bob@example.com')).not.toBe(id);
    // The separator keeps product and user apart.
    expect(endUserId('ab', 'c')).not.toBe(endUserId('a', 'bc'));
  });
});

describe('identifyCaller', () => {
  it('sets safety_identifier, replaces the client’s, and replaces a user the client sent', () => {
    const body: Record<string, unknown> = { model: 'm', safety_identifier: 'someone-else', user: 'me-really' };
    identifyCaller(body, 'abc');
    expect(body).toEqual({ model: 'm', safety_identifier: 'abc', user: 'abc' });
    const bare: Record<string, unknown> = { model: 'm' };
    identifyCaller(bare, 'abc');
    expect(bare).toEqual({ model: 'm', safety_identifier: 'abc' });
  });
});

describe('identifyAnthropicCaller', () => {
  it('sets metadata.user_id, replacing the client’s and keeping its other metadata', () => {
    const body: Record<string, unknown> = { metadata: { user_id: 'spoofed', trace: 'x' } };
    identifyAnthropicCaller(body, 'abc');
    expect(body.metadata).toEqual({ user_id: 'abc', trace: 'x' });
    const bare: Record<string, unknown> = { metadata: 'not an object' };
    identifyAnthropicCaller(bare, 'abc');
    expect(bare.metadata).toEqual({ user_id: 'abc' });
  });
});
