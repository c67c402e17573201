/** Passport strategy name of the JWT strategy. */
export const JWT_STRATEGY = 'keygate-jwt';
