import { GatewayError } from './gateway.error';

// For specs: the GatewayError a piece of code refuses with. Any other error is rethrown, and no
// refusal at all fails the spec. (Imported as `@keygate/errors/testing`, never by the gateway.)

/** The GatewayError `run` throws. */
export function refusalOf(run: () => unknown): GatewayError {
  try {
    run();
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error('expected a GatewayError, and nothing was thrown');
}

/** The GatewayError `promise` rejects with. */
export async function rejectionOf(promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error('expected a GatewayError, and the promise resolved');
}
