import { redact } from '@keygate/observability';

/**
 * A secret's content is malformed. The message names the secret and the path, never a value; as a
 * last guard, anything credential-shaped in a path (a key pasted where a name belongs) is masked.
 */
export class SecretFormatError extends Error {
  readonly problems: string[];

  constructor(
    readonly secret: string,
    problems: string[],
  ) {
    const masked = problems.map((p) => redact(p) as string);
    super(`${secret} is invalid:\n  - ${masked.join('\n  - ')}`);
    this.name = 'SecretFormatError';
    this.problems = masked;
  }
}

/**
 * A field or provider name as a problem may print it: a short word of lowercase letters and
 * underscores (no digits, so no hex or base64 secret passes), else its position only.
 */
export function fieldLabel(name: string, index: number, what = 'field'): string {
  return /^[a-z][a-z_]{0,23}$/.test(name) ? name : `(${what} at position ${index})`;
}
