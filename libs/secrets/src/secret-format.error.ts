/** A secret's content is malformed. The message names the secret and the path, never a value. */
export class SecretFormatError extends Error {
  constructor(
    readonly secret: string,
    readonly problems: string[],
  ) {
    super(`${secret} is invalid:\n  - ${problems.join('\n  - ')}`);
    this.name = 'SecretFormatError';
  }
}
