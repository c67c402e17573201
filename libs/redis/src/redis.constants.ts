/** Injection token of the shared ioredis client, or `undefined` when no Redis is configured. */
export const KEYGATE_REDIS = Symbol('KEYGATE:REDIS');
