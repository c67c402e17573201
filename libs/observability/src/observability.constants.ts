/** Injection token for the process's {@link JsonLogger}. */
export const KEYGATE_LOGGER = Symbol('KEYGATE:LOGGER');
