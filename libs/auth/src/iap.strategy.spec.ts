import type { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import type { SecretsService } from '@keygate/secrets';
import { IAP_ASSERTION_HEADER, IapStrategy, type IapRequest } from './iap.strategy';
import type { IapVerifier } from './iap.verifier';

describe('IapStrategy.validate', () => {
  const verify = jest.fn();
  const strategy = new IapStrategy({ verify } as unknown as IapVerifier, {} as SecretsService, {} as GatewayConfig);
  const assertion = 'eyJhbGciOiJFUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2ln';

  /** The refusal of a request, which must be a 401 `invalid_token` that never reached the verifier. */
  async function refusal(request: IapRequest): Promise<string> {
    const error: unknown = await strategy.validate(request).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'invalid_token', status: 401 });
    expect(verify).not.toHaveBeenCalled();
    return (error as Error).message;
  }

  beforeEach(() => verify.mockReset());

  it('leaves a request without an assertion to the other strategies', async () => {
    await expect(strategy.validate({ headers: {} })).resolves.toBe(false);
  });

  it('refuses two assertion headers, as Node joins them ("a.b.c, d.e.f"), with "send one", not "JWE"', async () => {
    const joined = `${assertion}, ${assertion}`;
    const raw = { rawHeaders: ['Host', 'gw', 'X-Goog-IAP-JWT-Assertion', assertion, 'x-goog-iap-jwt-assertion', assertion] };
    expect(await refusal({ headers: { [IAP_ASSERTION_HEADER]: joined }, raw })).toBe('send one IAP assertion header');
    // A bare request (no raw headers): the join gives the repeat away.
    expect(await refusal({ headers: { [IAP_ASSERTION_HEADER]: joined } })).toBe('send one IAP assertion header');
  });

  it('refuses two assertion headers even when one is empty', async () => {
    const raw = { rawHeaders: [IAP_ASSERTION_HEADER, assertion, IAP_ASSERTION_HEADER, ''] };
    expect(await refusal({ headers: { [IAP_ASSERTION_HEADER]: `${assertion}, ` }, raw })).toBe('send one IAP assertion header');
  });

  it('refuses an assertion header delivered as a list (how some adapters deliver repeats)', async () => {
    expect(await refusal({ headers: { [IAP_ASSERTION_HEADER]: [assertion, assertion] } })).toBe('send one IAP assertion header');
  });

  it('hands a single assertion header to the verifier', async () => {
    verify.mockRejectedValue(new GatewayError('invalid_token', 'the IAP assertion signature is invalid'));
    const raw = { rawHeaders: [IAP_ASSERTION_HEADER, assertion] };
    await expect(strategy.validate({ headers: { [IAP_ASSERTION_HEADER]: assertion }, raw })).rejects.toThrow(
      'the IAP assertion signature is invalid',
    );
    expect(verify).toHaveBeenCalledWith(assertion);
  });
});
