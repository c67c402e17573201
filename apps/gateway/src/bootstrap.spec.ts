import { securityHeaders } from './bootstrap';

// Unit spec: the security headers computed once at boot (the e2e suite checks them on real answers).

describe('securityHeaders', () => {
  it("records helmet's headers for the options given, lower-cased, X-Powered-By removal included", () => {
    const headers = new Map(
      securityHeaders({
        contentSecurityPolicy: { directives: { defaultSrc: ["'self'"] } },
        crossOriginResourcePolicy: { policy: 'same-site' },
      }),
    );
    expect(headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(headers.get('cross-origin-resource-policy')).toBe('same-site');
    expect(headers.get('x-content-type-options')).toBe('nosniff');
    expect(headers.get('strict-transport-security')).toMatch(/^max-age=\d+/);
    expect(headers.has('x-powered-by')).toBe(false);
    expect([...headers.keys()].every((name) => name === name.toLowerCase())).toBe(true);
  });

  it('leaves out what the options turn off', () => {
    const headers = new Map(securityHeaders({ contentSecurityPolicy: false, strictTransportSecurity: false }));
    expect(headers.has('content-security-policy')).toBe(false);
    expect(headers.has('strict-transport-security')).toBe(false);
    expect(headers.get('x-frame-options')).toBe('SAMEORIGIN');
  });

  it('refuses a per-request CSP directive (a nonce function), which a boot-time copy would freeze', () => {
    expect(() => securityHeaders({ contentSecurityPolicy: { directives: { scriptSrc: ["'self'", () => "'nonce-abc'"] } } })).toThrow(
      /may not be a function/,
    );
  });

  it("passes on helmet's own refusal of bad options", () => {
    expect(() => securityHeaders({ contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], 'bad name': ['x'] } } })).toThrow();
  });
});
