/** The audit record's `failure` classes (SPEC §7). */
export type FailureClass =
  | 'auth'
  | 'forbidden'
  | 'blocked'
  | 'rate_limit'
  | 'quota'
  | 'policy'
  | 'bad_request'
  | 'not_found'
  | 'upstream'
  | 'timeout'
  | 'client_abort'
  | 'internal';
