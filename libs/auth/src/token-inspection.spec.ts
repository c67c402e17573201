import { refusalOf } from '@keygate/errors/testing';
import { inspectToken } from './token-inspection';

const ALGS: ReadonlySet<string> = new Set(['RS256', 'ES256']);
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
/** A compact JWS with this header (the signature is never checked here). */
const tokenWith = (header: Record<string, unknown>): string => `${b64(header)}.${b64({ iss: 'x' })}.c2ln`;

describe('inspectToken: the kid', () => {
  it.each([
    ['an identifier', 'idp-a-1'],
    ['Entra ID', 'yEUwmXWL107Cc-7QZ2WSbeOb3sQ'],
    ['a versioned name', 'keys:2024.01'],
    ["Amazon Cognito's standard base64 with + / and = padding", 'vyVQH7UMjwYboVvyFf+zd4KHZfgc+RtmU/A2vHhgITI='],
    ['standard base64 starting with /', '/HFQNRpvCQsnCGbEcrD0zED/45Y='],
    ['base64url with padding', 'fUyIG0h6R5HFGfHDV8uebcRXldQ09dCZXbFKf6zy1r_-=='],
  ])('accepts %s', (_label, kid) => {
    expect(inspectToken(tokenWith({ alg: 'RS256', kid }), ALGS).header.kid).toBe(kid);
  });

  it.each([
    ['path traversal', '../../etc/passwd'],
    ['a dot segment beside a slash', 'keys/../admin'],
    ['SQL', "x' OR '1'='1"],
    ['a NUL byte', 'idp-a-1\u0000'],
    ['a space', 'idp a'],
    ['padding inside', 'ab=cd'],
    ['three padding characters', 'abcd==='],
    ['129 characters', 'k'.repeat(129)],
    ['an empty string', ''],
    ['a number', 1],
  ])('refuses %s', (_label, kid) => {
    const refused = refusalOf(() => inspectToken(tokenWith({ alg: 'RS256', kid }), ALGS));
    expect({ code: refused.code, message: refused.message }).toEqual({
      code: 'invalid_token',
      message: 'the token header has no usable kid',
    });
  });
});
