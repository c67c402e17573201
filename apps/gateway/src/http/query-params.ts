import { GatewayError } from '@keygate/errors';

/**
 * One query parameter, validated: a repeated parameter arrives as an array (taken for one value, it
 * would reach Redis or the upstream as several), a malformed one is refused, both with the contract's 400.
 */
export function queryValue(value: unknown, param: string, pattern: { test(value: string): boolean }, what: string): string {
  if (typeof value !== 'string' || !pattern.test(value)) throw new GatewayError('invalid_request', `${param} must be ${what}`, { param });
  return value;
}

/**
 * The query, refusing a parameter the route does not take, which would otherwise be ignored: a
 * misspelt `user` on `DELETE /admin/blocks` would lift the whole product's block.
 */
export function knownQuery(query: Record<string, unknown> | undefined, allowed: readonly string[]): Record<string, unknown> {
  const params = query ?? {};
  for (const name of Object.keys(params))
    if (!allowed.includes(name))
      throw new GatewayError(
        'invalid_request',
        `${name.slice(0, 64)}: unknown query parameter (${allowed.length === 0 ? 'this route takes none' : `this route takes ${allowed.join(', ')}`})`,
        {
          param: name.slice(0, 64),
        },
      );
  return params;
}

/**
 * A list parameter, each value validated: the SDKs send `name[]=…` once per value (qs brackets),
 * `name=…` is taken too; more than `max` values are refused.
 */
export function queryList(
  params: Record<string, unknown>,
  param: string,
  pattern: { test(value: string): boolean },
  what: string,
  max: number,
): string[] {
  const values: string[] = [];
  for (const name of [param, `${param}[]`]) {
    const value = params[name];
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? (value as unknown[]) : [value]) values.push(queryValue(one, param, pattern, what));
  }
  if (values.length > max) throw new GatewayError('invalid_request', `${param} takes at most ${max} values`, { param });
  return values;
}
